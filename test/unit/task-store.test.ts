import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { TaskStateError } from '../../src/errors.ts';
import { type Dialect, openStore, type Store } from '../../src/store/database.ts';
import { ApprovalStore } from '../../src/tasks/approval-store.ts';
import { type NewTask, TaskStore } from '../../src/tasks/task-store.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { createTestDatabase, DIALECTS } from '../helpers/test-store.ts';

function newTask(overrides: Partial<NewTask> = {}): NewTask {
  return newTaskInput({
    actorId: 101,
    triggerUrl: 'https://github.example/acme/widgets/issues/1',
    context: { issueTitle: 'Make it better' },
    ...overrides,
  });
}

/**
 * Two connections to one new database, as two airlock processes have: two SQLite connections to
 * one file, or two PostgreSQL pools.
 */
async function twoProcesses(dialect: Dialect): Promise<{ stores: [Store, Store]; close(): Promise<void> }> {
  if (dialect === 'postgres') {
    const url = await createTestDatabase();
    const stores: [Store, Store] = [await openStore({ url }), await openStore({ url })];
    return { stores, close: async () => void (await Promise.all(stores.map((s) => s.close()))) };
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-task-store-'));
  const file = path.join(dir, 'airlock.sqlite');
  const stores: [Store, Store] = [await openStore({ file }), await openStore({ file })];
  return {
    stores,
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe.each(DIALECTS)('the task store on %s', (dialect) => {
  let world: Awaited<ReturnType<typeof twoProcesses>> | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });
  const open = async () => {
    world = await twoProcesses(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const [a, b] = world.stores;
    return { clock, store: a, tasks: new TaskStore(a, clock), other: new TaskStore(b, clock) };
  };

  it('creates a task and reads back every field as it was given', async () => {
    const { tasks } = await open();
    const thread = {
      title: 'Make it better',
      body: 'Please.',
      author: 'bob',
      updatedAt: '2026-03-01T09:00:00Z',
      comments: [],
    };
    const created = await tasks.create(
      newTask({ deliveryId: 'd-1', instruction: 'do it', thread, parentTaskId: null, attempt: 2 }),
    );
    expect(created).toMatchObject({
      state: 'queued',
      repoFullName: 'acme/widgets',
      installationId: 1,
      branch: `airlock/issue-1-${created.id}`,
      deliveryId: 'd-1',
      instruction: 'do it',
      thread,
      attempt: 2,
      context: { issueTitle: 'Make it better' },
      start: { from: 'ref', ref: 'main' },
      config: DEFAULT_REPO_CONFIG,
      createdAt: '2026-03-01T10:00:00.000Z',
      startedAt: null,
      finishedAt: null,
      result: null,
    });
    expect(await tasks.get(created.id)).toEqual(created);
    expect(await tasks.find('nosuchtask')).toBeUndefined();
    await expect(tasks.get('nosuchtask')).rejects.toThrow('task nosuchtask does not exist');
    const waiting = await tasks.create(newTask({ issueNumber: 2, state: 'awaiting_approval' }));
    expect(waiting.state).toBe('awaiting_approval');
    // One task per delivery, whichever process writes it.
    await expect(tasks.create(newTask({ issueNumber: 3, deliveryId: 'd-1' }))).rejects.toThrow();
  });

  it('moves a task only as the state machine allows, stamping when it started and finished', async () => {
    const { tasks, clock } = await open();
    const task = await tasks.create(newTask());
    clock.advance(1000);
    const starting = await tasks.transition(task.id, 'starting', { reason: 'picked up' });
    expect(starting).toMatchObject({
      state: 'starting',
      reason: 'picked up',
      startedAt: '2026-03-01T10:00:01.000Z',
      updatedAt: '2026-03-01T10:00:01.000Z',
    });
    // A reason not given keeps the one there.
    expect(await tasks.transition(task.id, 'running')).toMatchObject({
      state: 'running',
      reason: 'picked up',
    });
    await expect(tasks.transition(task.id, 'queued')).rejects.toThrow(
      new TaskStateError(`task ${task.id} cannot move from running to queued`),
    );
    await expect(tasks.transition(task.id, 'pushing', { from: ['starting'] })).rejects.toThrow(
      new TaskStateError(`task ${task.id} is running, expected starting`),
    );
    await expect(tasks.transition('nosuchtask', 'starting')).rejects.toThrow(
      new TaskStateError('task nosuchtask does not exist'),
    );
    clock.advance(1000);
    const done = await tasks.transition(task.id, 'succeeded', { reason: 'changes pushed' });
    expect(done).toMatchObject({
      state: 'succeeded',
      reason: 'changes pushed',
      startedAt: '2026-03-01T10:00:01.000Z',
      finishedAt: '2026-03-01T10:00:02.000Z',
    });
    await expect(tasks.transition(task.id, 'failed')).rejects.toThrow(
      `task ${task.id} cannot move from succeeded to failed`,
    );
    expect((await tasks.get(task.id)).state).toBe('succeeded');
  });

  it('lets one of two processes move a task out of a state, and refuses the other', async () => {
    const { tasks, other } = await open();
    const task = await tasks.create(newTask());
    const movers = [
      tasks.transition(task.id, 'starting', { from: ['queued'] }),
      other.transition(task.id, 'starting', { from: ['queued'] }),
      other.transition(task.id, 'cancelled', { reason: 'cancelled by bob', from: ['queued'] }),
      tasks.transition(task.id, 'starting', { from: ['queued'] }),
    ];
    const outcomes = await Promise.allSettled(movers);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<{ state: string }>).value.state;
    for (const lost of outcomes.filter((o) => o.status === 'rejected'))
      expect((lost as PromiseRejectedResult).reason).toBeInstanceOf(TaskStateError);
    expect((await other.get(task.id)).state).toBe(winner);
  });

  it('withdraws the approval a task waited for when it ends, in the same write', async () => {
    const { tasks, store, clock } = await open();
    const approvals = new ApprovalStore(store, clock);
    const task = await tasks.create(newTask({ state: 'awaiting_approval' }));
    const shown = { gate: 'run' as const, thread: null, instruction: null, untrustedAuthors: [] };
    const approval = await approvals.request(task.id, 'run', 'asked', shown, 24);
    await tasks.transition(task.id, 'cancelled', { reason: 'cancelled by alice' });
    expect(await approvals.pending(task.id)).toBeUndefined();
    expect((await approvals.forTask(task.id))[0]).toMatchObject({
      id: approval.id,
      state: 'withdrawn',
      channel: 'cancel',
    });
  });

  it('lists queued tasks in arrival order, ties in the same millisecond included', async () => {
    const { tasks, clock } = await open();
    const first = await tasks.create(newTask({ issueNumber: 1 }));
    const second = await tasks.create(newTask({ issueNumber: 2 }));
    const third = await tasks.create(newTask({ issueNumber: 3 }));
    clock.advance(-60_000);
    const earlier = await tasks.create(newTask({ issueNumber: 4 }));
    clock.advance(120_000);
    const later = await tasks.create(newTask({ issueNumber: 5 }));
    await tasks.transition(second.id, 'starting');
    expect((await tasks.queued()).map((t) => t.id)).toEqual([earlier.id, first.id, third.id, later.id]);
    expect((await tasks.queued(2)).map((t) => t.id)).toEqual([earlier.id, first.id]);
    // Newest first, the same ties reversed.
    expect((await tasks.list()).map((t) => t.id)).toEqual([
      later.id,
      third.id,
      second.id,
      first.id,
      earlier.id,
    ]);
    expect((await tasks.list({ state: 'starting' })).map((t) => t.id)).toEqual([second.id]);
    expect((await tasks.list({ limit: 2, offset: 1 })).map((t) => t.id)).toEqual([third.id, second.id]);
    expect((await tasks.active()).map((t) => t.id)).toEqual([second.id]);
  });

  it('lists a branch’s tasks oldest first, and knows the pull requests it opened', async () => {
    const { tasks, clock } = await open();
    const branch = 'airlock/issue-1-abc';
    const opened = await tasks.create(newTask({ branch }));
    const followUp = await tasks.create(newTask({ branch, kind: 'follow_up', prNumber: 9 }));
    clock.advance(1000);
    const fix = await tasks.create(newTask({ branch, kind: 'ci_fix', prNumber: 9 }));
    await tasks.create(newTask({ branch: 'airlock/issue-2-def', issueNumber: 2 }));
    await tasks.create(newTask({ branch, repoFullName: 'acme/other' }));
    expect((await tasks.onBranch('acme/widgets', branch)).map((t) => t.id)).toEqual([
      opened.id,
      followUp.id,
      fix.id,
    ]);
    expect(await tasks.openedPull('acme/widgets', branch, 9)).toBe(true);
    expect(await tasks.openedPull('acme/widgets', branch, 10)).toBe(false);
    expect(await tasks.openedPull('acme/other', branch, 9)).toBe(false);
    expect((await tasks.list({ prNumber: 9 })).map((t) => t.id)).toEqual([fix.id, followUp.id]);
    expect((await tasks.list({ issueNumber: 2 })).map((t) => t.branch)).toEqual(['airlock/issue-2-def']);
  });

  it('records what becomes known about a task', async () => {
    const { tasks, clock } = await open();
    const task = await tasks.create(newTask());
    clock.advance(500);
    const result = { outcome: 'changes_pushed' as const, headSha: 'a'.repeat(40), summary: 'Done.' };
    const updated = await tasks.update(task.id, {
      trackingCommentId: 11,
      checkRunId: 12,
      headSha: 'a'.repeat(40),
      prNumber: 13,
      result,
      context: { ...task.context, threadChanged: { edited: true, leftOut: 1 } },
    });
    expect(updated).toMatchObject({
      trackingCommentId: 11,
      checkRunId: 12,
      headSha: 'a'.repeat(40),
      prNumber: 13,
      result,
      context: { issueTitle: 'Make it better', threadChanged: { edited: true, leftOut: 1 } },
      updatedAt: '2026-03-01T10:00:00.500Z',
      state: 'queued',
    });
    expect(await tasks.update(task.id, {})).toEqual(updated);
    await expect(tasks.update('nosuchtask', { prNumber: 1 })).rejects.toThrow(
      'task nosuchtask does not exist',
    );
  });
});
