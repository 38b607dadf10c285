import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { GitHubJobQueue } from '../github/github-jobs.ts';
import type { Logger } from '../logger.ts';
import { isTerminal, type Task, type TaskResult, type TaskState } from './task.ts';
import { failureOutcome, TaskCancelled, type TaskRunner, TaskTimedOut } from './task-runner.ts';
import type { TaskStore } from './task-store.ts';

/** Publishes a pushed result (opens or updates the PR); returns the result with PR details. */
export type ResultPublisher = (task: Task, result: TaskResult) => Promise<TaskResult>;

/** What the scheduler needs. */
export interface SchedulerDeps {
  tasks: TaskStore;
  runner: TaskRunner;
  jobs: Pick<GitHubJobQueue, 'enqueue'>;
  audit: AuditSink;
  log: Logger;
  limits: { maxConcurrent: number; maxPerRepo: number };
  publish?: ResultPublisher;
  /** Default wall-clock limit when a task's config has none. */
  defaultTimeoutMs?: number;
  /** Called after every terminal transition (metrics, CI follow-up bookkeeping). */
  onFinished?(task: Task): void;
}

/**
 * Starts queued tasks within a global and a per-repository concurrency limit, never two on the
 * same branch at once, each under its wall-clock limit; and ends each one with a recorded outcome.
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

  /** Cancels a task: a queued one at once, a running one by aborting its runner. */
  cancel(taskId: string, by: string): void {
    const running = this.#running.get(taskId);
    if (running) {
      running.controller.abort(new TaskCancelled(by));
      return;
    }
    const task = this.#deps.tasks.find(taskId);
    if (task && task.state === 'queued') {
      this.#finish(task, 'cancelled', by);
    }
  }

  /** Ids of tasks running in this process. */
  runningIds(): string[] {
    return [...this.#running.keys()];
  }

  /** Waits for every running task to end (used by tests and graceful shutdown). */
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
          (t.state === 'queued' || t.state === 'starting'),
      );
  }

  #start(queued: Task): void {
    const task = this.#deps.tasks.transition(queued.id, 'starting', { from: ['queued'] });
    this.#record(task);
    const controller = new AbortController();
    const limitMs = timeoutMs(task, this.#deps.defaultTimeoutMs);
    const timer = setTimeout(() => controller.abort(new TaskTimedOut(limitMs)), limitMs);
    const done = this.#run(task, controller.signal)
      .catch((error) =>
        this.#deps.log.error({ taskId: task.id, err: errorMessage(error) }, 'scheduler bookkeeping failed'),
      )
      .finally(() => {
        clearTimeout(timer);
        this.#running.delete(task.id);
        queueMicrotask(() => this.tick());
      });
    this.#running.set(task.id, { task, controller, done });
  }

  async #run(task: Task, signal: AbortSignal): Promise<void> {
    const log = this.#deps.log.child({
      taskId: task.id,
      repo: task.repoFullName,
      deliveryId: task.deliveryId,
    });
    const enterPhase = (state: 'running' | 'pushing') => {
      this.#record(this.#deps.tasks.transition(task.id, state));
    };
    try {
      let result = await this.#deps.runner.run(task, { signal, enterPhase, log });
      if (signal.aborted) throw signal.reason;
      if (this.#deps.tasks.get(task.id).state === 'starting') enterPhase('running');
      if (result.outcome === 'changes_pushed' && this.#deps.publish) {
        if (this.#deps.tasks.get(task.id).state !== 'pushing') enterPhase('pushing');
        result = await this.#deps.publish(this.#deps.tasks.get(task.id), result);
      }
      this.#deps.tasks.update(task.id, {
        result,
        ...(result.headSha ? { headSha: result.headSha } : {}),
        ...(result.prNumber ? { prNumber: result.prNumber } : {}),
      });
      const reason = result.outcome === 'no_changes' ? 'the agent made no change' : null;
      this.#finish(this.#deps.tasks.get(task.id), 'succeeded', reason);
    } catch (error) {
      const ended = failureOutcome(signal.aborted ? signal.reason : error);
      if (ended.state === 'failed') log.warn({ err: ended.reason }, 'task failed');
      this.#finish(this.#deps.tasks.get(task.id), ended.state, ended.reason);
    }
  }

  #finish(task: Task, state: TaskState, reason: string | null): void {
    if (isTerminal(task.state)) return;
    const finished = this.#deps.tasks.transition(task.id, state, { reason });
    this.#deps.audit.append(task.id, 'task.outcome', { state, reason, result: finished.result });
    this.#record(finished);
    this.#deps.onFinished?.(finished);
  }

  #record(task: Task): void {
    this.#deps.audit.append(task.id, 'task.state', { state: task.state, reason: task.reason });
    this.#deps.jobs.enqueue({ kind: 'tracking', taskId: task.id });
    if (task.headSha || task.checkRunId) this.#deps.jobs.enqueue({ kind: 'check_run', taskId: task.id });
  }
}

function timeoutMs(task: Task, fallback = 30 * 60_000): number {
  const minutes = (task.config as { timeout_minutes?: unknown }).timeout_minutes;
  return typeof minutes === 'number' && minutes > 0 ? minutes * 60_000 : fallback;
}
