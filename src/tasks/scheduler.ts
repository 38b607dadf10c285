import { errorMessage, TaskStateError } from '../errors.ts';
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
  /** The tick under way: ticks run one after another, so two never start the same task. */
  #ticking: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(deps: SchedulerDeps) {
    this.#deps = deps;
  }

  /** Starts every queued task the limits allow (after any tick under way); returns the ids started. */
  tick(): Promise<string[]> {
    const next = this.#ticking.then(() => this.#tick());
    this.#ticking = next.catch(() => undefined);
    return next;
  }

  /** Cancels a task: a queued (or waiting) one at once, a running one by aborting its run. */
  async cancel(taskId: string, by: string): Promise<void> {
    if (this.#abort(taskId, by)) return;
    try {
      await finishTask(this.#deps, taskId, 'cancelled', by, { from: ['queued', 'awaiting_approval'] });
    } catch (error) {
      if (!(error instanceof TaskStateError)) throw error;
      // Started since (by this scheduler: its run is aborted), running elsewhere, or unknown.
      this.#abort(taskId, by);
    }
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
    await this.#ticking;
    for (const r of this.#running.values()) r.controller.abort(new TaskCancelled(reason));
    await this.idle();
  }

  async #tick(): Promise<string[]> {
    if (this.#stopped) return [];
    const started: string[] = [];
    const { maxConcurrent, maxPerRepo } = this.#deps.limits;
    for (const task of await this.#deps.tasks.queued(500)) {
      if (this.#stopped || this.#running.size >= maxConcurrent) break;
      const inRepo = [...this.#running.values()].filter((r) => r.task.repoFullName === task.repoFullName);
      if (inRepo.length >= maxPerRepo) continue;
      if (inRepo.some((r) => r.task.branch === task.branch)) continue;
      if (await this.#olderQueuedOnBranch(task)) continue;
      if (await this.#start(task)) started.push(task.id);
    }
    return started;
  }

  #abort(taskId: string, by: string): boolean {
    const running = this.#running.get(taskId);
    running?.controller.abort(new TaskCancelled(by));
    return running !== undefined;
  }

  async #olderQueuedOnBranch(task: Task): Promise<boolean> {
    return (await this.#deps.tasks.onBranch(task.repoFullName, task.branch)).some(
      (t) =>
        t.id !== task.id &&
        t.createdAt < task.createdAt &&
        (t.state === 'queued' || t.state === 'starting' || t.state === 'awaiting_approval'),
    );
  }

  /**
   * Starts one queued task; false when it is no longer queued (cancelled since it was listed). Its
   * place under the limits is taken before the write, so a cancel meanwhile finds it here.
   */
  async #start(queued: Task): Promise<boolean> {
    const controller = new AbortController();
    let ended: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      ended = resolve;
    });
    this.#running.set(queued.id, { task: queued, controller, done });
    let task: Task;
    try {
      task = await enterState(this.#deps, queued.id, 'starting', { from: ['queued'] });
    } catch (error) {
      this.#running.delete(queued.id);
      ended();
      if (error instanceof TaskStateError) return false;
      throw error;
    }
    recordTimeInQueue(this.#deps.tracer, task, this.#deps.clock.now());
    const log = this.#deps.log.child({
      taskId: task.id,
      installation: task.installationId,
      repo: task.repoFullName,
      deliveryId: task.deliveryId,
    });
    void runTaskToEnd(this.#deps, task, { signal: controller.signal, log })
      .catch((error) => log.error({ err: errorMessage(error) }, 'task bookkeeping failed'))
      .finally(() => {
        this.#running.delete(task.id);
        ended();
        this.tick().catch((error) => this.#deps.log.error({ err: errorMessage(error) }, 'scheduling failed'));
      });
    return true;
  }
}
