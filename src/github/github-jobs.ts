import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { retryAfterFailure } from '../store/backoff.ts';
import type { Db } from '../store/database.ts';

/** What a reaction is put on: an issue or pull request, or one comment on it. */
export const ReactionTarget = z.union([
  z.object({ issueNumber: z.number() }),
  z.object({ commentId: z.number(), kind: z.enum(['issue_comment', 'review_comment']) }),
]);
export type ReactionTarget = z.infer<typeof ReactionTarget>;

/** Durable GitHub side effects. Each is retried under the queues' one retry policy (store/backoff.ts). */
export const GitHubJob = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('react'),
    installationId: z.number(),
    repo: z.string(),
    target: ReactionTarget,
    content: z.enum(['+1', 'eyes', 'rocket', 'confused']),
  }),
  z.object({
    kind: z.literal('comment'),
    installationId: z.number(),
    repo: z.string(),
    issueNumber: z.number(),
    body: z.string(),
  }),
  /** A comment on a commit (a failed environment build of a push, on the pushed head). */
  z.object({
    kind: z.literal('commit_comment'),
    installationId: z.number(),
    repo: z.string(),
    commitSha: z.string(),
    body: z.string(),
  }),
  /** Create or edit the task's tracking comment from the task's state at the time the job runs. */
  z.object({ kind: z.literal('tracking'), taskId: z.string() }),
  /** Create or update the task's `airlock` check run from its state at the time the job runs. */
  z.object({ kind: z.literal('check_run'), taskId: z.string() }),
  /**
   * Judge CI again on the head of a task's branch once the task ended: CI may have finished while
   * the task (or a follow-up queued behind it) was still going, when nothing was judged.
   */
  z.object({ kind: z.literal('ci_recheck'), taskId: z.string() }),
  /** Take a draft pull request out of draft (CI passed). */
  z.object({
    kind: z.literal('ready_for_review'),
    installationId: z.number(),
    repo: z.string(),
    pullNumber: z.number(),
    pullNodeId: z.string(),
  }),
  /** Ask people to review a pull request (CI passed). */
  z.object({
    kind: z.literal('request_review'),
    installationId: z.number(),
    repo: z.string(),
    pullNumber: z.number(),
    reviewers: z.array(z.string()).min(1),
  }),
]);
export type GitHubJob = z.infer<typeof GitHubJob>;

/** Runs one job against GitHub. */
export type GitHubJobExecutor = (job: GitHubJob) => Promise<void>;

/** The outbox of GitHub side effects, stored in SQLite so none is lost across restarts. */
export class GitHubJobQueue {
  readonly #db: Db;
  readonly #clock: Clock;
  /** Jobs being executed right now: a new job must not be coalesced into one already rendering. */
  readonly #executing = new Set<number>();

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Queues a job; tracking and check-run jobs are coalesced while one for the same task is pending. */
  enqueue(job: GitHubJob, refs: { taskId?: string | null; deliveryId?: string | null } = {}): void {
    const taskId = 'taskId' in job ? job.taskId : (refs.taskId ?? null);
    if (job.kind === 'tracking' || job.kind === 'check_run') {
      const pending = this.#db
        .prepare(
          `SELECT id FROM github_jobs WHERE status = 'pending' AND kind = ? AND task_id = ? AND attempts = 0`,
        )
        .all(job.kind, taskId) as Array<{ id: number }>;
      if (pending.some((row) => !this.#executing.has(row.id))) return;
    }
    const now = this.#clock.now().toISOString();
    this.#db
      .prepare(
        `INSERT INTO github_jobs (task_id, delivery_id, kind, payload_json, status, not_before, created_at)
         VALUES (?, ?, ?, ?, 'pending', ?, ?)`,
      )
      .run(taskId, refs.deliveryId ?? null, job.kind, JSON.stringify(job), now, now);
  }

  /**
   * Runs every job that is due, oldest first; a job that fails waits out its back-off while later
   * jobs overtake it. Returns how many ran (succeeded or not).
   */
  async drain(execute: GitHubJobExecutor, log: Logger, limit = 100): Promise<number> {
    const due = this.#db
      .prepare(
        `SELECT id, payload_json, attempts, created_at FROM github_jobs WHERE status = 'pending' AND not_before <= ?
         ORDER BY id LIMIT ?`,
      )
      .all(this.#clock.now().toISOString(), limit) as Array<{
      id: number;
      payload_json: string;
      attempts: number;
      created_at: string;
    }>;
    for (const row of due) {
      const job = GitHubJob.parse(JSON.parse(row.payload_json));
      this.#executing.add(row.id);
      try {
        await execute(job);
        this.#db
          .prepare(
            `UPDATE github_jobs SET status = 'done', attempts = attempts + 1, done_at = ? WHERE id = ?`,
          )
          .run(this.#clock.now().toISOString(), row.id);
      } catch (error) {
        const attempts = row.attempts + 1;
        const next = retryAfterFailure(this.#clock, attempts, row.created_at, error);
        const giveUp = 'giveUp' in next;
        log.warn(
          { job: job.kind, jobId: row.id, attempts, err: errorMessage(error), giveUp },
          'GitHub job failed',
        );
        this.#db
          .prepare(
            `UPDATE github_jobs SET status = ?, attempts = ?, last_error = ?, not_before = ? WHERE id = ?`,
          )
          .run(
            giveUp ? 'failed' : 'pending',
            attempts,
            giveUp ? `${next.giveUp}: ${errorMessage(error)}` : errorMessage(error),
            giveUp ? this.#clock.now().toISOString() : next.retryAt,
            row.id,
          );
      } finally {
        this.#executing.delete(row.id);
      }
    }
    return due.length;
  }

  /** Pending jobs whose back-off has passed. */
  dueCount(): number {
    const row = this.#db
      .prepare(`SELECT count(*) AS n FROM github_jobs WHERE status = 'pending' AND not_before <= ?`)
      .get(this.#clock.now().toISOString()) as { n: number };
    return row.n;
  }

  /** Pending job count (for metrics and tests). */
  pendingCount(): number {
    return (
      this.#db.prepare(`SELECT count(*) AS n FROM github_jobs WHERE status = 'pending'`).get() as {
        n: number;
      }
    ).n;
  }
}
