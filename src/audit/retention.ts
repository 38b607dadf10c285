import { type Clock, daysBefore } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Db } from '../store/database.ts';
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
export function purgeConversation(
  deps: { db: Db; audit: AuditLog; clock: Clock },
  request: PurgeRequest,
): PurgeReport {
  const { db, audit } = deps;
  const cutoff = daysBefore(deps.clock, request.olderThanDays);
  const where = ['finished_at IS NOT NULL', 'finished_at <= ?'];
  const args: unknown[] = [cutoff];
  if (request.taskId) where.push('id = ?') && args.push(request.taskId);
  if (request.repoFullName) where.push('repo_full_name = ?') && args.push(request.repoFullName);
  const finished = (
    db
      .prepare(`SELECT id FROM tasks WHERE ${where.join(' AND ')} ORDER BY finished_at`)
      .all(...args) as Array<{ id: string }>
  ).map((r) => r.id);
  const tasks: string[] = [];
  let payloads = 0;
  let bytes = 0;
  for (const taskId of finished) {
    if (request.dryRun) {
      const texts = audit.keptTexts(taskId);
      if (texts.length === 0) continue;
      tasks.push(taskId);
      payloads += texts.length;
      bytes += texts.reduce((sum, t) => sum + t.bytes, 0);
      continue;
    }
    const purged = audit.purgeTexts(taskId, {
      reason: request.reason,
      operator: request.operator,
      olderThanDays: request.olderThanDays,
    });
    if (purged.payloads === 0) continue;
    tasks.push(taskId);
    payloads += purged.payloads;
    bytes += purged.bytes;
  }
  // Move the overwritten pages out of the write-ahead log into the file (best effort: readers may hold it).
  if (!request.dryRun && payloads > 0) db.pragma('wal_checkpoint(PASSIVE)');
  return { tasks, payloads, bytes, dryRun: Boolean(request.dryRun) };
}

/**
 * Applies the retention policy now and then (hourly by default): purges the text of tasks that
 * ended more than `days` days ago. Returns a function that stops it.
 */
export function startRetention(
  deps: { db: Db; audit: AuditLog; clock: Clock; log: Logger },
  policy: { days: number | null; intervalMs?: number },
): () => void {
  const { days } = policy;
  if (days === null) return () => {};
  const run = () => {
    try {
      const report = purgeConversation(deps, {
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
  run();
  const timer = setInterval(run, policy.intervalMs ?? 3_600_000);
  timer.unref();
  return () => clearInterval(timer);
}
