import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { openDatabase } from '../../src/store/database.ts';
import { Scheduler } from '../../src/tasks/scheduler.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import { transitionAllowed } from '../../src/tasks/task.ts';
import { TaskFailure, type TaskRunContext, type TaskRunner } from '../../src/tasks/task-runner.ts';
import { type NewTask, TaskStore } from '../../src/tasks/task-store.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** A runner double whose tasks finish when the test says so. */
class GatedRunner implements TaskRunner {
  readonly started: string[] = [];
  readonly #gates = new Map<string, { resolve: (r: TaskResult) => void; reject: (e: unknown) => void }>();
  run(task: Task, ctx: TaskRunContext): Promise<TaskResult> {
    this.started.push(task.id);
    ctx.enterPhase('running');
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

function newTask(overrides: Partial<NewTask> = {}): NewTask {
  return {
    installationId: 1,
    repoFullName: 'acme/widgets',
    repoId: 7,
    issueNumber: 1,
    prNumber: null,
    kind: 'issue',
    baseRef: 'main',
    actorLogin: 'alice',
    actorId: 1,
    triggerEvent: 'issues.labeled',
    triggerUrl: null,
    deliveryId: null,
    instruction: null,
    context: {},
    config: { timeout_minutes: 30 },
    ...overrides,
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('task state machine', () => {
  it('allows only the documented transitions', () => {
    expect(transitionAllowed('queued', 'starting')).toBe(true);
    expect(transitionAllowed('running', 'pushing')).toBe(true);
    expect(transitionAllowed('queued', 'running')).toBe(false);
    expect(transitionAllowed('succeeded', 'queued')).toBe(false);
    expect(transitionAllowed('failed', 'running')).toBe(false);
  });
});

describe('Scheduler', () => {
  let scheduler: Scheduler | undefined;
  afterEach(async () => {
    await scheduler?.stop();
  });

  function setup(limits = { maxConcurrent: 2, maxPerRepo: 1 }) {
    const db = openDatabase(':memory:');
    const tasks = new TaskStore(db, systemClock);
    const runner = new GatedRunner();
    const audit = new RecordingAudit();
    const jobs: unknown[] = [];
    scheduler = new Scheduler({
      tasks,
      runner,
      jobs: { enqueue: (j) => jobs.push(j) },
      audit,
      log: memoryLogger().log,
      limits,
    });
    return { tasks, runner, audit, jobs, scheduler };
  }

  it('honours the global and per-repository limits', async () => {
    const { tasks, runner, scheduler } = setup({ maxConcurrent: 2, maxPerRepo: 1 });
    const a1 = tasks.create(newTask({ repoFullName: 'acme/a', issueNumber: 1 }));
    tasks.create(newTask({ repoFullName: 'acme/a', issueNumber: 2 }));
    const b1 = tasks.create(newTask({ repoFullName: 'acme/b', issueNumber: 1 }));
    tasks.create(newTask({ repoFullName: 'acme/c', issueNumber: 1 }));
    expect(scheduler.tick()).toEqual([a1.id, b1.id]);
    await tick();
    expect(runner.started).toEqual([a1.id, b1.id]);
    expect(tasks.get(a1.id).state).toBe('running');
  });

  it('runs follow-ups on one branch one after another', async () => {
    const { tasks, runner, scheduler } = setup({ maxConcurrent: 4, maxPerRepo: 4 });
    const first = tasks.create(newTask({ branch: 'airlock/issue-1-x', kind: 'follow_up' }));
    const second = tasks.create(newTask({ branch: 'airlock/issue-1-x', kind: 'follow_up' }));
    expect(scheduler.tick()).toEqual([first.id]);
    expect(scheduler.tick()).toEqual([]);
    await tick();
    runner.finish(first.id);
    await waitFor(() => runner.started.length === 2, 5000, 'the second follow-up to start');
    expect(tasks.get(first.id).state).toBe('succeeded');
    expect(runner.started).toEqual([first.id, second.id]);
  });

  it('records failures with the runner reason, and cancellations', async () => {
    const { tasks, runner, scheduler, audit } = setup({ maxConcurrent: 4, maxPerRepo: 4 });
    const failing = tasks.create(newTask({ issueNumber: 1 }));
    const cancelled = tasks.create(newTask({ issueNumber: 2 }));
    const queuedCancel = tasks.create(newTask({ issueNumber: 3, repoFullName: 'acme/other' }));
    scheduler.cancel(queuedCancel.id, 'cancelled by alice');
    expect(tasks.get(queuedCancel.id).state).toBe('cancelled');
    scheduler.tick();
    await tick();
    runner.fail(failing.id, new TaskFailure('agent_failed', 'codex exited with 1'));
    scheduler.cancel(cancelled.id, 'cancelled by bob');
    await scheduler.idle();
    expect(tasks.get(failing.id)).toMatchObject({
      state: 'failed',
      reason: 'agent_failed: codex exited with 1',
    });
    expect(tasks.get(cancelled.id)).toMatchObject({ state: 'cancelled', reason: 'cancelled by bob' });
    expect(audit.types(failing.id)).toEqual(['task.state', 'task.state', 'task.outcome', 'task.state']);
  });

  it('times a task out at its wall-clock limit', async () => {
    const { tasks, scheduler } = setup();
    const task = tasks.create(newTask({ config: { timeout_minutes: 0.001 } }));
    scheduler.tick();
    await scheduler.idle();
    expect(tasks.get(task.id).state).toBe('timed_out');
    expect(tasks.get(task.id).reason).toMatch(/wall-clock limit/);
  });
});
