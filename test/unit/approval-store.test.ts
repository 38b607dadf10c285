import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/database.ts';
import { ApprovalError, ApprovalStore, type RunShown, shownDigest } from '../../src/tasks/approval-store.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

const shown: RunShown = { gate: 'run', thread: null, instruction: 'do it', untrustedAuthors: ['bob'] };
const pushShown = {
  gate: 'push' as const,
  base: null,
  head: 'b'.repeat(40),
  diffStat: ' a | 1 +',
  files: [{ path: 'a', added: 1, deleted: 0 }],
  patchSha256: 'c'.repeat(64),
  commands: [],
  hosts: [],
};

describe.each(DIALECTS)('the approval store on %s', (dialect) => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  const open = async () => {
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const tasks = new TaskStore(store, clock);
    const task = async () =>
      (await tasks.create(newTaskInput({ repoId: null, state: 'awaiting_approval' }))).id;
    return { clock, task, approvals: new ApprovalStore(store, clock) };
  };

  it('keeps one pending approval per task, with what was shown and its digest', async () => {
    const { approvals, task } = await open();
    const id = await task();
    const approval = await approvals.request(id, 'run', 'untrusted text', shown, 24);
    expect(approval).toMatchObject({
      taskId: id,
      gate: 'run',
      state: 'pending',
      shown,
      shownDigest: shownDigest(shown),
      requestedAt: '2026-03-01T10:00:00.000Z',
      expiresAt: '2026-03-02T10:00:00.000Z',
      decidedBy: null,
    });
    expect(await approvals.pending(id)).toEqual(approval);
    await expect(approvals.request(id, 'run', 'again', shown, 24)).rejects.toThrow();
    expect(await approvals.allPending()).toEqual([approval]);
  });

  it('settles an approval once: a second decision is refused', async () => {
    const { approvals, task, clock } = await open();
    const id = await task();
    const approval = await approvals.request(id, 'run', 'asked', shown, 24);
    clock.advance(60_000);
    const decided = await approvals.decide(
      approval.id,
      { state: 'approved', channel: 'web' },
      { login: 'carol', id: 3 },
    );
    expect(decided).toMatchObject({
      state: 'approved',
      channel: 'web',
      decidedBy: 'carol',
      decidedById: 3,
      decidedAt: '2026-03-01T10:01:00.000Z',
    });
    const again = await Promise.allSettled([
      approvals.decide(approval.id, { state: 'rejected', channel: 'comment' }, { login: 'dave', id: 4 }),
      approvals.decide(approval.id, { state: 'expired', channel: 'expiry' }, null),
    ]);
    for (const outcome of again) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ApprovalError);
    }
    expect(await approvals.pending(id)).toBeUndefined();
    expect(await approvals.forTask(id)).toEqual([decided]);
  });

  it('finds the approvals whose time is up, and the approved push not yet released', async () => {
    const { approvals, task, clock } = await open();
    const [a, b] = [await task(), await task()];
    await approvals.request(a, 'run', 'asked', shown, 1);
    const push = await approvals.request(b, 'push', 'held', pushShown, 48);
    clock.advance(3_600_000);
    expect((await approvals.expired()).map((x) => x.taskId)).toEqual([a]);
    expect(await approvals.approvedPush(b)).toBeUndefined();
    await approvals.decide(push.id, { state: 'approved', channel: 'comment' }, { login: 'carol', id: 3 });
    expect(await approvals.approvedPush(b)).toMatchObject({ id: push.id, releasedAt: null });
    await approvals.released(push.id);
    expect(await approvals.approvedPush(b)).toBeUndefined();
    expect((await approvals.all()).map((x) => [x.taskId, x.gate])).toEqual(
      [
        [a, 'run'],
        [b, 'push'],
      ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
    );
  });
});
