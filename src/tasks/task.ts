import { z } from 'zod';
import { CiFailure } from '../ci/ci-policy.ts';
import { RepoConfig } from '../config/repo-config.ts';
import { TraceParent } from '../tracing/trace-parent.ts';
import { IssueThread } from './task-thread.ts';

export const TaskState = z.enum([
  'awaiting_approval',
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

// A task waits for approval before it runs (created waiting, released to `queued`) or, holding its
// result on the host, before it pushes (from `running` or `pushing`; released to `queued`, and the
// scheduler then starts the push alone: `starting → pushing`).
const TRANSITIONS: Record<TaskState, readonly TaskState[]> = {
  awaiting_approval: ['queued', 'cancelled', 'failed'],
  queued: ['starting', 'cancelled', 'failed'],
  starting: ['running', 'pushing', 'queued', 'failed', 'cancelled', 'timed_out'],
  running: ['pushing', 'awaiting_approval', 'succeeded', 'failed', 'cancelled', 'timed_out'],
  // `queued` again only for the push of an approved result cut short by a restart.
  pushing: ['awaiting_approval', 'queued', 'succeeded', 'failed', 'cancelled', 'timed_out'],
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
};

/** Whether the state machine allows moving from `from` to `to`. */
export function transitionAllowed(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
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
      .strict()
      .optional(),
    /** The failing checks a CI follow-up is asked to fix, their fingerprint and the commit judged. */
    ciFailures: z.array(CiFailure).optional(),
    ciFingerprint: z.string().optional(),
    ciHeadSha: z.string().optional(),
    /** The pull request's head branch when the trigger came from a pull request. */
    headRef: z.string().optional(),
    /** Whether that pull request's head lives in another repository than its base. */
    fork: z.boolean().optional(),
    /**
     * The thread changed after the trigger (an edit, or comments from people without write
     * access): the agent got the text as it was approved, and the tracking comment says so.
     */
    threadChanged: z.object({ edited: z.boolean(), leftOut: z.number().int() }).strict().optional(),
    /** Local mode: the person running `airlock run` (a commit trailer) and the repository's path. */
    local: z.object({ coAuthor: z.string(), path: z.string() }).strict().optional(),
    /**
     * The W3C traceparent of the span that created the task (intake's, in its delivery's trace):
     * whichever process runs the task continues that trace from it.
     */
    traceParent: TraceParent.optional(),
  })
  .strict();
export type TaskContext = z.infer<typeof TaskContext>;

/**
 * Where a task's workspace starts, decided once at intake (separately from why the task exists):
 * a new branch from the tip of a branch of the repository, the task's own branch that an earlier
 * airlock task created and pushed, or a new branch from a pull request's head as the base
 * repository keeps it (`refs/pull/N/head`: a fork's branch is out of the task token's reach).
 */
export const TaskStart = z.discriminatedUnion('from', [
  z.object({ from: z.literal('ref'), ref: z.string().min(1) }).strict(),
  z.object({ from: z.literal('own_branch') }).strict(),
  z.object({ from: z.literal('pull_head'), pull: z.number().int().positive() }).strict(),
]);
export type TaskStart = z.infer<typeof TaskStart>;

/** The outcome the runner reports for a task that ended well. */
export const TaskResult = z.object({
  /** `changes_held`: the result is kept on the host until a person approves pushing it. */
  outcome: z.enum(['changes_pushed', 'changes_held', 'no_changes']),
  headSha: z.string().optional(),
  summary: z.string().default(''),
  diffStat: z.string().optional(),
  prNumber: z.number().optional(),
  prUrl: z.string().optional(),
});
export type TaskResult = z.infer<typeof TaskResult>;

/** A task row as read back from the database. */
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
  start: TaskStart,
  /** The issue or pull request text asked about, frozen at the trigger (null for local tasks). */
  thread: IssueThread.nullable(),
  config: RepoConfig,
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
