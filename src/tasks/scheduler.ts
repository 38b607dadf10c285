import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Task } from './task.ts';
import {
  enterState,
  finishTask,
  type LifecycleDeps,
  recordTimeInQueue,
  runTaskToEnd,
} from './task-lifecycle.ts';
import { TaskCancelled } from './task-runner.ts';

/** What the scheduler needs: a task's lifecycle parts, a log and the concurrency limits. */
export interface SchedulerDeps extends LifecycleDeps {
  log: Logger;
  limits: { maxConcurrent: number; maxPerRepo: number };
}

/**
 * Starts queued tasks within a global and a per-repository concurrency limit, never two on the
 * same branch at once, and runs each to its end (see runTaskToEnd). It writes and records every
 * state change and tells `onState`; what GitHub hears of it is the listener's business.
 */
export class Scheduler {
  readonly #deps: SchedulerDeps;
  readonly #running = new Map<string, { task: Task; controller: AbortController; done: Promise<void> }>();
  #stopped = false;

  constructor(deps: SchedulerDeps) {
    this.#deps = deps;
  }

  /** Starts every queued task the limits allow; returns the ids started. */
  tick(): string[] {
    if (this.#stopped) return [];
    const started: string[] = [];
    const { maxConcurrent, maxPerRepo } = this.#deps.limits;
    for (const task of this.#deps.tasks.queued(500)) {
      if (this.#running.size >= maxConcurrent) break;
      const inRepo = [...this.#running.values()].filter((r) => r.task.repoFullName === task.repoFullName);
      if (inRepo.length >= maxPerRepo) continue;
      if (inRepo.some((r) => r.task.branch === task.branch)) continue;
      if (this.#olderQueuedOnBranch(task)) continue;
      this.#start(task);
      started.push(task.id);
    }
    return started;
  }

  /** Cancels a task: a queued one at once, a running one by aborting its run. */
  cancel(taskId: string, by: string): void {
    const running = this.#running.get(taskId);
    if (running) {
      running.controller.abort(new TaskCancelled(by));
      return;
    }
    const task = this.#deps.tasks.find(taskId);
    if (task && (task.state === 'queued' || task.state === 'awaiting_approval'))
      finishTask(this.#deps, task.id, 'cancelled', by);
  }

  /** Ids of tasks running in this process. */
  runningIds(): string[] {
    return [...this.#running.keys()];
  }

  /** Resolves once no task runs in this process. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  /** Stops starting tasks and cancels the running ones, waiting for their cleanup. */
  async stop(reason = 'airlock is shutting down'): Promise<void> {
    this.#stopped = true;
    for (const r of this.#running.values()) r.controller.abort(new TaskCancelled(reason));
    await this.idle();
  }

  #olderQueuedOnBranch(task: Task): boolean {
    return this.#deps.tasks
      .onBranch(task.repoFullName, task.branch)
      .some(
        (t) =>
          t.id !== task.id &&
          t.createdAt < task.createdAt &&
          (t.state === 'queued' || t.state === 'starting' || t.state === 'awaiting_approval'),
      );
  }

  #start(queued: Task): void {
    const task = enterState(this.#deps, queued.id, 'starting', { from: ['queued'] });
    recordTimeInQueue(this.#deps.tracer, task, this.#deps.clock.now());
    const controller = new AbortController();
    const log = this.#deps.log.child({
      taskId: task.id,
      installation: task.installationId,
      repo: task.repoFullName,
      deliveryId: task.deliveryId,
    });
    const done = runTaskToEnd(this.#deps, task, { signal: controller.signal, log })
      .then(() => undefined)
      .catch((error) => log.error({ err: errorMessage(error) }, 'task bookkeeping failed'))
      .finally(() => {
        this.#running.delete(task.id);
        queueMicrotask(() => this.tick());
      });
    this.#running.set(task.id, { task, controller, done });
  }
}
