import { AirlockError, errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Task, TaskResult } from './task.ts';

/** Why a task failed, in words stable enough for metrics and the tracking comment. */
export type FailureReason =
  | 'agent_failed'
  | 'setup_failed'
  | 'budget_exceeded'
  | 'limit_exceeded'
  | 'push_refused'
  | 'sandbox_failed'
  | 'github_failed'
  | 'interrupted'
  | 'internal';

/** A task ended badly for a reason the runner can name. */
export class TaskFailure extends AirlockError {
  readonly reason: FailureReason;
  constructor(reason: FailureReason, message: string, options: { cause?: unknown } = {}) {
    super(reason, message, options);
    this.reason = reason;
  }
}

/** What the scheduler gives a runner for one task. */
export interface TaskRunContext {
  /** Aborted on cancel or wall-clock timeout; `signal.reason` says which. */
  signal: AbortSignal;
  /** Records a phase change; resolves once it is written (act on the phase after that). */
  enterPhase(state: 'running' | 'pushing'): Promise<void>;
  log: Logger;
}

/**
 * Runs one task to its end: boot its VM, bind its proxy, run the agent, push its branch. The only
 * production implementation runs agents inside a microVM; tests may pass a double.
 */
export interface TaskRunner {
  run(task: Task, context: TaskRunContext): Promise<TaskResult>;
}

/**
 * Why a process stops a task it was running without ending it: the task is no longer its to
 * finish (a worker whose lease was taken). Nothing about the task is written after it.
 */
export class TaskAbandoned extends Error {}

/** Abort reasons the scheduler uses, so runners and the scheduler agree on what happened. */
export class TaskCancelled extends Error {
  readonly by: string;
  constructor(by: string) {
    super(by);
    this.by = by;
  }
}
export class TaskTimedOut extends Error {
  readonly limitMs: number;
  constructor(limitMs: number) {
    super(`task exceeded its wall-clock limit of ${Math.round(limitMs / 60000)} minutes`);
    this.limitMs = limitMs;
  }
}

/** The terminal state and stated reason for a run that threw (or was aborted with) `error`. */
export function failureOutcome(error: unknown): {
  state: 'cancelled' | 'timed_out' | 'failed';
  reason: string;
} {
  if (error instanceof TaskCancelled) return { state: 'cancelled', reason: error.by };
  if (error instanceof TaskTimedOut) return { state: 'timed_out', reason: error.message };
  if (error instanceof TaskFailure) return { state: 'failed', reason: `${error.reason}: ${error.message}` };
  return { state: 'failed', reason: `internal: ${errorMessage(error)}` };
}
