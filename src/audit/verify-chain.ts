import type { Db } from '../store/database.ts';
import { eventHash, GENESIS_HASH } from './audit-log.ts';

/** Where and how a chain breaks. */
export interface ChainProblem {
  taskId: string;
  seq: number;
  problem: string;
}

/** The result of verifying one or every task's chain. */
export interface VerifyReport {
  ok: boolean;
  tasks: number;
  events: number;
  problems: ChainProblem[];
}

/**
 * Recomputes every hash of a task's chain (or of every task) from the stored fields, and reports
 * the first place each chain breaks: a changed field, a missing or reordered event, a wrong link.
 */
export function verifyAuditChains(db: Db, taskId?: string): VerifyReport {
  const rows = db
    .prepare(
      `SELECT task_id, seq, ts, type, data_json, prev_hash, hash FROM audit_events
       ${taskId ? 'WHERE task_id = ?' : ''} ORDER BY task_id, seq`,
    )
    .iterate(...(taskId ? [taskId] : [])) as IterableIterator<{
    task_id: string;
    seq: number;
    ts: string;
    type: string;
    data_json: string;
    prev_hash: string;
    hash: string;
  }>;
  const problems: ChainProblem[] = [];
  let tasks = 0;
  let events = 0;
  let current: string | undefined;
  let expectedSeq = 1;
  let prev = GENESIS_HASH;
  let broken = false;
  for (const row of rows) {
    events++;
    if (row.task_id !== current) {
      current = row.task_id;
      tasks++;
      expectedSeq = 1;
      prev = GENESIS_HASH;
      broken = false;
    }
    if (broken) continue;
    const fail = (problem: string) => {
      problems.push({ taskId: row.task_id, seq: row.seq, problem });
      broken = true;
    };
    if (row.seq !== expectedSeq) {
      fail(
        row.seq > expectedSeq
          ? `events ${expectedSeq}–${row.seq - 1} are missing`
          : `event ${row.seq} is out of order`,
      );
      continue;
    }
    if (row.prev_hash !== prev) {
      fail(`event ${row.seq} does not link to event ${row.seq - 1} (reordered, replaced or deleted)`);
      continue;
    }
    const recomputed = eventHash({
      taskId: row.task_id,
      seq: row.seq,
      ts: row.ts,
      type: row.type,
      dataJson: row.data_json,
      prevHash: row.prev_hash,
    });
    if (recomputed !== row.hash) {
      fail(`event ${row.seq} (${row.type}) was changed after it was written`);
      continue;
    }
    prev = row.hash;
    expectedSeq++;
  }
  return { ok: problems.length === 0, tasks, events, problems };
}
