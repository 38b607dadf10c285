import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import type { Store } from '../../src/store/database.ts';
import { Scheduler } from '../../src/tasks/scheduler.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import { transitionAllowed } from '../../src/tasks/task.ts';
import { TaskFailure, type TaskRunContext, type TaskRunner } from '../../src/tasks/task-runner.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';
import { idOnlyTracer } from '../helpers/test-tracer.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** A runner double whose tasks finish when the test says so. */
class GatedRunner implements TaskRunner {
  readonly started: string[] = [];
  readonly #gates = new Map<string, { resolve: (r: TaskResult) => void; reject: (e: unknown) => void }>();
  async run(task: Task, ctx: TaskRunContext): Promise<TaskResult> {
    await ctx.enterPhase('running');
    this.started.push(task.id);
    return new Promise((resolve, reject) => {
      this.#gates.set(task.id, { resolve, reject });
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
    });
  }
  finish(id: string, result: TaskResult = { outcome: 'no_changes', summary: 'nothing to do' }) {
    this.#gates.get(id)?.resolve(result);
  }
  fail(id: string, error: unknown) {
    this.#gates.get(id)?.reject(error);
  }
}

describe('task state machine', () => {
  it('allows only the documented transitions', () => {
    expect(transitionAllowed('queued', 'starting')).toBe(true);
    expect(transitionAllowed('running', 'pushing')).toBe(true);
    expect(transitionAllowed('queued', 'running')).toBe(false);
    expect(transitionAllowed('succeeded', 'queued')).toBe(false);
    expect(transitionAllowed('failed', 'running')).toBe(false);
  });
});

describe.each(DIALECTS)('Scheduler on %s', (dialect) => {
  let scheduler: Scheduler | undefined;
  let store: Store | undefined;
  afterEach(async () => {
    await scheduler?.stop();
    await store?.close();
    scheduler = undefined;
    store = undefined;
  });

  async function setup(limits = { maxConcurrent: 2, maxPerRepo: 1 }) {
    store = await openTestStore(dialect);
    const clock = new ManualClock();
    const tasks = new TaskStore(store, clock);
    const runner = new GatedRunner();
    const audit = new RecordingAudit();
    const states: string[] = [];
    scheduler = new Scheduler({
      tasks,
      runner,
      audit,
      clock,
      onState: (task) => {
        states.push(`${task.id}:${task.state}`);
      },
      log: memoryLogger().log,
      limits,
      tracer: idOnlyTracer(),
    });
    return { tasks, runner, audit, clock, states, scheduler };
  }

  it('honours the global and per-repository limits', async () => {
    const { tasks, runner, scheduler } = await setup({ maxConcurrent: 2, maxPerRepo: 1 });
    const a1 = await tasks.create(newTaskInput({ repoFullName: 'acme/a', issueNumber: 1 }));
    await tasks.create(newTaskInput({ repoFullName: 'acme/a', issueNumber: 2 }));
    const b1 = await tasks.create(newTaskInput({ repoFullName: 'acme/b', issueNumber: 1 }));
    await tasks.create(newTaskInput({ repoFullName: 'acme/c', issueNumber: 1 }));
    expect(await scheduler.tick()).toEqual([a1.id, b1.id]);
    await waitFor(() => runner.started.length === 2, 5000, 'both tasks to start');
    // Both run at once: which reaches its runner first is up to the database (on PostgreSQL, which
    // query gets the pool's idle connection), not the scheduler, whose order tick() gave above.
    expect([...runner.started].sort()).toEqual([a1.id, b1.id].sort());
    expect((await tasks.get(a1.id)).state).toBe('running');
  });

  it('runs follow-ups on one branch one after another', async () => {
    const { tasks, runner, scheduler } = await setup({ maxConcurrent: 4, maxPerRepo: 4 });
    const first = await tasks.create(newTaskInput({ branch: 'airlock/issue-1-x', kind: 'follow_up' }));
    const second = await tasks.create(newTaskInput({ branch: 'airlock/issue-1-x', kind: 'follow_up' }));
    expect(await scheduler.tick()).toEqual([first.id]);
    expect(await scheduler.tick()).toEqual([]);
    await waitFor(() => runner.started.length === 1, 5000, 'the first follow-up to start');
    runner.finish(first.id);
    await waitFor(() => runner.started.length === 2, 5000, 'the second follow-up to start');
    expect((await tasks.get(first.id)).state).toBe('succeeded');
    expect(runner.started).toEqual([first.id, second.id]);
  });

  it('records failures with the runner reason, and cancellations', async () => {
    const { tasks, runner, scheduler, audit, states } = await setup({ maxConcurrent: 4, maxPerRepo: 4 });
    const failing = await tasks.create(newTaskInput({ issueNumber: 1 }));
    const cancelled = await tasks.create(newTaskInput({ issueNumber: 2 }));
    const queuedCancel = await tasks.create(newTaskInput({ issueNumber: 3, repoFullName: 'acme/other' }));
    await scheduler.cancel(queuedCancel.id, 'cancelled by alice');
    expect((await tasks.get(queuedCancel.id)).state).toBe('cancelled');
    await scheduler.tick();
    await waitFor(() => runner.started.length === 2, 5000, 'both tasks to start');
    runner.fail(failing.id, new TaskFailure('agent_failed', 'codex exited with 1'));
    await scheduler.cancel(cancelled.id, 'cancelled by bob');
    await scheduler.idle();
    expect(await tasks.get(failing.id)).toMatchObject({
      state: 'failed',
      reason: 'agent_failed: codex exited with 1',
    });
    expect(await tasks.get(cancelled.id)).toMatchObject({ state: 'cancelled', reason: 'cancelled by bob' });
    expect(audit.types(failing.id)).toEqual(['task.state', 'task.state', 'task.outcome', 'task.state']);
    // Every state change is told to the listener (what GitHub hears is attached there).
    expect(states.filter((s) => s.startsWith(failing.id))).toEqual([
      `${failing.id}:starting`,
      `${failing.id}:running`,
      `${failing.id}:failed`,
    ]);
  });

  it('times a task out at its wall-clock limit, on the injected clock', async () => {
    const { tasks, scheduler, clock, runner } = await setup();
    const task = await tasks.create(
      newTaskInput({ config: { ...DEFAULT_REPO_CONFIG, timeout_minutes: 20 } }),
    );
    await scheduler.tick();
    await waitFor(() => runner.started.length === 1, 5000, 'the task to start');
    clock.advance(19 * 60_000);
    expect((await tasks.get(task.id)).state).toBe('running');
    clock.advance(60_000);
    await scheduler.idle();
    expect(await tasks.get(task.id)).toMatchObject({
      state: 'timed_out',
      reason: expect.stringMatching(/20 minutes/),
    });
  });

  it("states a succeeded task's outcome as its reason, even after a re-queue", async () => {
    const { tasks, runner, scheduler } = await setup();
    const task = await tasks.create(newTaskInput());
    await tasks.transition(task.id, 'starting');
    await tasks.transition(task.id, 'queued', {
      reason: 're-queued: airlock restarted before the agent started',
    });
    await scheduler.tick();
    await waitFor(() => runner.started.length === 1, 5000, 'the task to start');
    runner.finish(task.id);
    await scheduler.idle();
    expect(await tasks.get(task.id)).toMatchObject({
      state: 'succeeded',
      reason: 'the agent made no change',
    });
  });
});
