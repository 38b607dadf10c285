import { sql } from 'kysely';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { retryAfterFailure } from '../store/backoff.ts';
import { type Claim, leaseEnd, newClaim, releaseClaims, whileClaimed } from '../store/claim-lease.ts';
import type { Store } from '../store/database.ts';
import { isTerminal, type Task } from '../tasks/task.ts';

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

/**
 * What GitHub hears of a task in a new state: its tracking comment and check run (rendered from
 * the task when the job runs) and, once a task with a pull request ends, a new look at its CI.
 * Queued by whichever process wrote the state: the control plane, or a worker.
 */
export function jobsForState(task: Task): GitHubJob[] {
  return [
    { kind: 'tracking', taskId: task.id },
    ...(task.headSha || task.checkRunId ? [{ kind: 'check_run' as const, taskId: task.id }] : []),
    ...(isTerminal(task.state) && task.prNumber !== null
      ? [{ kind: 'ci_recheck' as const, taskId: task.id }]
      : []),
  ];
}

/**
 * Queues GitHub jobs with the change that calls for them, from a listener (called synchronously):
 * inside a transaction just before it commits, so they commit or roll back with it; outside one at
 * once, a failure logged as `what`'s.
 */
export function queueWithChange(
  store: Pick<Store, 'inTransaction' | 'beforeCommit'>,
  log: Logger,
  what: string,
  queue: () => Promise<unknown>,
): void {
  if (store.inTransaction()) store.beforeCommit(async () => void (await queue()));
  else
    void queue().catch((error) =>
      log.error({ err: errorMessage(error) }, `GitHub jobs for ${what} could not be queued`),
    );
}

/** Queues the jobs a task's new state calls for (see jobsForState). */
export async function enqueueStateJobs(jobs: Pick<GitHubJobQueue, 'enqueue'>, task: Task): Promise<void> {
  for (const job of jobsForState(task)) await jobs.enqueue(job);
}

/** Queues the jobs a task's new state calls for with the change (see queueWithChange). */
export function queueStateJobs(
  store: Pick<Store, 'inTransaction' | 'beforeCommit'>,
  jobs: Pick<GitHubJobQueue, 'enqueue'>,
  log: Logger,
  task: Task,
): void {
  queueWithChange(store, log, `task ${task.id}`, () => enqueueStateJobs(jobs, task));
}

/** Runs one job against GitHub. */
export type GitHubJobExecutor = (job: GitHubJob) => Promise<void>;

/**
 * The channel told when a job is queued, so the job loop of every process on the database looks
 * at once (each also polls).
 */
export const GITHUB_JOBS_CHANNEL = 'airlock_github_jobs';

/*
 * Queries name the status 'pending' as a literal, not a parameter, so that both databases' planners
 * may use the partial indexes on pending jobs (migration 013).
 */

/** Kinds rendered from the task's state when they run: one waiting is as good as two. */
const COALESCED = new Set<GitHubJob['kind']>(['tracking', 'check_run']);

/** A job this process has claimed: its row, and its claim on it. */
interface ClaimedJob {
  id: number;
  payload_json: string;
  attempts: number;
  created_at: string;
  claim: Claim;
}

/**
 * The outbox of GitHub side effects, stored in the database so none is lost across restarts.
 * Each process runs jobs it has claimed (one statement that picks the oldest due job and writes
 * its claim), so two processes never run one job at once; see claim-lease.ts for what a claim is.
 */
export class GitHubJobQueue {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /**
   * Queues a job; a tracking or check-run job is coalesced into one for the same task that waits
   * for its first attempt (one being run is claimed, and counted as attempted, so the change that
   * queued this one gets a render of its own). One statement either way.
   */
  async enqueue(
    job: GitHubJob,
    refs: { taskId?: string | null; deliveryId?: string | null } = {},
  ): Promise<void> {
    const taskId = 'taskId' in job ? job.taskId : (refs.taskId ?? null);
    const now = this.#clock.now().toISOString();
    const row = {
      task_id: taskId,
      delivery_id: refs.deliveryId ?? null,
      kind: job.kind,
      payload_json: JSON.stringify(job),
      status: 'pending' as const,
      not_before: now,
      created_at: now,
    };
    const insert = this.#store.db.insertInto('github_jobs');
    const result = await (COALESCED.has(job.kind) && taskId !== null
      ? insert
          .columns(['task_id', 'delivery_id', 'kind', 'payload_json', 'status', 'not_before', 'created_at'])
          .expression(
            this.#store.db
              .selectNoFrom((eb) => [
                eb.val(row.task_id).as('task_id'),
                eb.val(row.delivery_id).as('delivery_id'),
                eb.val(row.kind).as('kind'),
                eb.val(row.payload_json).as('payload_json'),
                eb.val(row.status).as('status'),
                eb.val(row.not_before).as('not_before'),
                eb.val(row.created_at).as('created_at'),
              ])
              .where((eb) =>
                eb.not(
                  eb.exists(
                    eb
                      .selectFrom('github_jobs')
                      .select('id')
                      .where('status', '=', sql.lit('pending'))
                      .where('kind', '=', job.kind)
                      .where('task_id', '=', taskId)
                      .where('attempts', '=', 0),
                  ),
                ),
              ),
          )
      : insert.values(row)
    ).executeTakeFirst();
    if (result.numInsertedOrUpdatedRows === 1n) await this.#store.notify(GITHUB_JOBS_CHANNEL);
  }

  /**
   * Runs the jobs that were due when it started, oldest first, each claimed as it is taken; a job
   * that fails waits out its back-off while later jobs overtake it. Returns how many ran
   * (succeeded or not).
   */
  async drain(execute: GitHubJobExecutor, log: Logger, limit = 100, signal?: AbortSignal): Promise<number> {
    // Jobs queued while this drain runs (by the jobs it runs, say) wait for the next one.
    const last = await this.#store.db
      .selectFrom('github_jobs')
      .select((eb) => eb.fn.max('id').as('id'))
      .where('status', '=', sql.lit('pending'))
      .executeTakeFirst();
    if (last?.id === undefined || last.id === null) return 0;
    let ran = 0;
    for (let claimed = await this.#claim(last.id); claimed; claimed = await this.#claim(last.id)) {
      ran++;
      await this.#run(claimed, execute, log);
      // A process that stops leaves the rest to another replica, or to itself when it starts again.
      if (ran >= limit || signal?.aborted) break;
    }
    return ran;
  }

  /**
   * Gives up every claim in the database. Only for SQLite at start: one process owns an SQLite
   * database, so a claim found there is a previous process's, which stopped with it.
   */
  releaseClaims(): Promise<number> {
    return releaseClaims(this.#store, 'github_jobs');
  }

  /** Pending jobs whose back-off has passed, those being run included. */
  dueCount(): Promise<number> {
    return this.#pending(this.#clock.now().toISOString());
  }

  /** Pending job count (for metrics and tests). */
  pendingCount(): Promise<number> {
    return this.#pending();
  }

  /** How many jobs are pending (and due by `dueBy`, when given). */
  async #pending(dueBy?: string): Promise<number> {
    let query = this.#store.db
      .selectFrom('github_jobs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('status', '=', sql.lit('pending'));
    if (dueBy !== undefined) query = query.where('not_before', '<=', dueBy);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  /**
   * Claims the oldest due job up to `lastId` for this process, counting the attempt, in one
   * statement: on PostgreSQL the row it picks is locked (FOR UPDATE SKIP LOCKED) so concurrent
   * claimers each take another; on SQLite the one connection serialises them.
   */
  async #claim(lastId: number): Promise<ClaimedJob | undefined> {
    const now = this.#clock.now().toISOString();
    const claim = newClaim(this.#clock);
    const row = await this.#store.db
      .updateTable('github_jobs')
      .set((eb) => ({
        attempts: eb('attempts', '+', 1),
        claimed_by: claim.token,
        claimed_until: claim.until,
      }))
      .where('id', 'in', (eb) => {
        const oldest = eb
          .selectFrom('github_jobs')
          .select('id')
          .where('status', '=', sql.lit('pending'))
          .where('not_before', '<=', now)
          .where((w) => w.or([w('claimed_until', 'is', null), w('claimed_until', '<=', now)]))
          .where('id', '<=', lastId)
          .orderBy('id')
          .limit(1);
        return this.#store.dialect === 'postgres' ? oldest.forUpdate().skipLocked() : oldest;
      })
      .returning(['id', 'payload_json', 'attempts', 'created_at'])
      .executeTakeFirst();
    return row ? { ...row, claim } : undefined;
  }

  async #run(claimed: ClaimedJob, execute: GitHubJobExecutor, log: Logger): Promise<void> {
    let kind: string | undefined;
    try {
      const job = GitHubJob.parse(JSON.parse(claimed.payload_json));
      kind = job.kind;
      await whileClaimed(
        () => this.#renew(claimed),
        () => execute(job),
        (error) => log.warn({ jobId: claimed.id, err: errorMessage(error) }, 'GitHub job claim not renewed'),
      );
      await this.#mine(claimed)
        .set({
          status: 'done',
          done_at: this.#clock.now().toISOString(),
          claimed_by: null,
          claimed_until: null,
        })
        .execute();
    } catch (error) {
      const next = retryAfterFailure(this.#clock, claimed.attempts, claimed.created_at, error);
      const giveUp = 'giveUp' in next;
      log.warn(
        { job: kind, jobId: claimed.id, attempts: claimed.attempts, err: errorMessage(error), giveUp },
        'GitHub job failed',
      );
      await this.#mine(claimed)
        .set({
          status: giveUp ? 'failed' : 'pending',
          last_error: giveUp ? `${next.giveUp}: ${errorMessage(error)}` : errorMessage(error),
          not_before: giveUp ? this.#clock.now().toISOString() : next.retryAt,
          claimed_by: null,
          claimed_until: null,
        })
        .execute();
    }
  }

  async #renew(claimed: ClaimedJob): Promise<void> {
    await this.#mine(claimed)
      .set({ claimed_until: leaseEnd(this.#clock) })
      .execute();
  }

  /**
   * An update of a job that applies only while this process's claim holds: a job whose lease ran
   * out was taken (and run) by another process, whose outcome is the one recorded.
   */
  #mine(claimed: ClaimedJob) {
    return this.#store.db
      .updateTable('github_jobs')
      .where('id', '=', claimed.id)
      .where('claimed_by', '=', claimed.claim.token);
  }
}
