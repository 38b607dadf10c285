import { z } from 'zod';
import { TaskStateError } from '../errors.ts';

export const TaskState = z.enum([
  'queued',
  'starting',
  'running',
  'pushing',
  'succeeded',
  'failed',
  'cancelled',
  'timed_out',
]);
export type TaskState = z.infer<typeof TaskState>;

export const TaskKind = z.enum(['issue', 'follow_up', 'ci_fix', 'retry', 'local']);
export type TaskKind = z.infer<typeof TaskKind>;

/** States a task can no longer leave. */
export const TERMINAL_STATES: readonly TaskState[] = ['succeeded', 'failed', 'cancelled', 'timed_out'];
/** States in which a task holds (or may hold) a VM, a proxy listener and a token. */
export const ACTIVE_STATES: readonly TaskState[] = ['starting', 'running', 'pushing'];

const TRANSITIONS: Record<TaskState, readonly TaskState[]> = {
  queued: ['starting', 'cancelled', 'failed'],
  starting: ['running', 'queued', 'failed', 'cancelled', 'timed_out'],
  running: ['pushing', 'succeeded', 'failed', 'cancelled', 'timed_out'],
  pushing: ['succeeded', 'failed', 'cancelled', 'timed_out'],
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
};

/** Whether the state machine allows moving from `from` to `to`. */
export function transitionAllowed(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws a TaskStateError unless `from → to` is a legal transition. */
export function assertTransition(taskId: string, from: TaskState, to: TaskState): void {
  if (!transitionAllowed(from, to)) {
    throw new TaskStateError(`task ${taskId} cannot move from ${from} to ${to}`);
  }
}

/** Whether a task in this state is finished. */
export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** Extra context a trigger carries into the prompt (review comment location, CI failures, ...). */
export const TaskContext = z
  .object({
    issueTitle: z.string().optional(),
    commentId: z.number().optional(),
    commentKind: z.enum(['issue_comment', 'review_comment', 'review']).optional(),
    reviewComment: z
      .object({ path: z.string(), line: z.number().nullable(), diffHunk: z.string() })
      .optional(),
    ciFailures: z.array(z.unknown()).optional(),
    headRef: z.string().optional(),
    fork: z.boolean().optional(),
    /** A ref of the task's repository to start from instead of the base branch (fork PRs). */
    startFrom: z
      .string()
      .regex(/^refs\/pull\/\d+\/head$/)
      .optional(),
  })
  .passthrough();
export type TaskContext = z.infer<typeof TaskContext>;

/** The outcome the runner reports for a task that ended well. */
export const TaskResult = z.object({
  outcome: z.enum(['changes_pushed', 'no_changes']),
  headSha: z.string().optional(),
  summary: z.string().default(''),
  diffStat: z.string().optional(),
  prNumber: z.number().optional(),
  prUrl: z.string().optional(),
});
export type TaskResult = z.infer<typeof TaskResult>;

/** A task row as read back from SQLite. */
export const Task = z.object({
  id: z.string(),
  installationId: z.number().nullable(),
  repoFullName: z.string(),
  repoId: z.number().nullable(),
  issueNumber: z.number().nullable(),
  prNumber: z.number().nullable(),
  kind: TaskKind,
  state: TaskState,
  reason: z.string().nullable(),
  branch: z.string(),
  baseRef: z.string().nullable(),
  actorLogin: z.string(),
  actorId: z.number().nullable(),
  triggerEvent: z.string(),
  triggerUrl: z.string().nullable(),
  deliveryId: z.string().nullable(),
  instruction: z.string().nullable(),
  context: TaskContext,
  config: z.record(z.string(), z.unknown()),
  parentTaskId: z.string().nullable(),
  attempt: z.number(),
  trackingCommentId: z.number().nullable(),
  checkRunId: z.number().nullable(),
  headSha: z.string().nullable(),
  result: TaskResult.nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type Task = z.infer<typeof Task>;

/** Splits "owner/name" into its parts. */
export function splitRepo(fullName: string): { owner: string; repo: string } {
  const [owner, repo] = fullName.split('/');
  if (!owner || !repo) throw new Error(`not a repository full name: ${fullName}`);
  return { owner, repo };
}
