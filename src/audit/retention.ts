import { sql } from 'kysely';
import { type Clock, daysBefore } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import type { AuditLog } from './audit-log.ts';

/** What to purge: the kept prompt and model-response text of tasks that ended before a cutoff. */
export interface PurgeRequest {
  /** Tasks that finished at least this many days ago (0: every finished task). */
  olderThanDays: number;
  taskId?: string;
  repoFullName?: string;
  /** Why, in the operator's words; recorded in each task's chain. */
  reason: string;
  /** Who asked (a login, `retention-policy`, ...); recorded in each task's chain. */
  operator: string;
  /** Report what would be purged without purging it. */
  dryRun?: boolean;
}

/** What a purge did (or, on a dry run, would do). */
export interface PurgeReport {
  tasks: string[];
  payloads: number;
  bytes: number;
  dryRun: boolean;
}

/**
 * Purges the stored text of prompts and model responses, one task at a time and each in one
 * transaction: first an `audit.purged` event listing the events whose text goes is appended to the
 * task's own chain, then the text is deleted (the database refuses the deletion without that event).
 * The chained digests remain, so the chain still verifies and still proves what was said.
 */
export async function purgeConversation(
  deps: { store: Store; audit: AuditLog; clock: Clock },
  request: PurgeRequest,
): Promise<PurgeReport> {
  const { store, audit } = deps;
  const cutoff = daysBefore(deps.clock, request.olderThanDays);
  const finished = (
    await store.db
      .selectFrom('tasks')
      .select('id')
      .where('finished_at', 'is not', null)
      .where('finished_at', '<=', cutoff)
      .$if(request.taskId !== undefined, (q) => q.where('id', '=', request.taskId!))
      .$if(request.repoFullName !== undefined, (q) => q.where('repo_full_name', '=', request.repoFullName!))
      .orderBy('finished_at')
      .execute()
  ).map((r) => r.id);
  const tasks: string[] = [];
  let payloads = 0;
  let bytes = 0;
  for (const taskId of finished) {
    if (request.dryRun) {
      const texts = await audit.keptTexts(taskId);
      if (texts.length === 0) continue;
      tasks.push(taskId);
      payloads += texts.length;
      bytes += texts.reduce((sum, t) => sum + t.bytes, 0);
      continue;
    }
    const purged = await audit.purgeTexts(taskId, {
      reason: request.reason,
      operator: request.operator,
      olderThanDays: request.olderThanDays,
    });
    if (purged.payloads === 0) continue;
    tasks.push(taskId);
    payloads += purged.payloads;
    bytes += purged.bytes;
  }
  // SQLite: move the overwritten pages out of the write-ahead log into the file (best effort:
  // readers may hold it). PostgreSQL reuses the space of deleted rows after its vacuum.
  if (!request.dryRun && payloads > 0 && store.dialect === 'sqlite')
    await sql`PRAGMA wal_checkpoint(PASSIVE)`.execute(store.db);
  return { tasks, payloads, bytes, dryRun: Boolean(request.dryRun) };
}

/**
 * Applies the retention policy now and then (hourly by default): purges the text of tasks that
 * ended more than `days` days ago, one run at a time. Returns a function that stops it and waits
 * for a run under way.
 */
export function startRetention(
  deps: { store: Store; audit: AuditLog; clock: Clock; log: Logger },
  policy: { days: number | null; intervalMs?: number },
): () => Promise<void> {
  const { days } = policy;
  if (days === null) return async () => {};
  const purge = async () => {
    try {
      const report = await purgeConversation(deps, {
        olderThanDays: days,
        reason: `retention policy: prompt and model-response text is kept ${days} day(s) after a task ends`,
        operator: 'retention-policy',
      });
      if (report.tasks.length) {
        deps.log.info(
          { tasks: report.tasks.length, payloads: report.payloads, bytes: report.bytes },
          'retention purge',
        );
      }
    } catch (error) {
      deps.log.error(
        { err: errorMessage(error) },
        'retention purge failed; it will be retried at the next interval',
      );
    }
  };
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= purge().finally(() => {
      running = undefined;
    });
  };
  run();
  const timer = setInterval(run, policy.intervalMs ?? 3_600_000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
