import { createHash } from 'node:crypto';
import type { Db } from '../store/database.ts';
import {
  CONTENT_KEY,
  eventHash,
  GENESIS_HASH,
  isConversationType,
  type StoredEventRow,
} from './audit-event.ts';
import { verifyApprovals } from './verify-approvals.ts';

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
 * The text of prompts and model responses is checked against the digest its event carries; text
 * that is gone must be covered by an `audit.purged` event of the same chain. Approvals are
 * checked against the chains that record them (see verifyApprovals).
 */
export function verifyAuditChains(db: Db, taskId?: string): VerifyReport {
  const rows = db
    .prepare(
      `SELECT e.task_id, e.seq, e.ts, e.type, e.data_json, e.prev_hash, e.hash, p.data_json AS payload_json
       FROM audit_events e LEFT JOIN audit_payloads p ON p.task_id = e.task_id AND p.seq = e.seq
       ${taskId ? 'WHERE e.task_id = ?' : ''} ORDER BY e.task_id, e.seq`,
    )
    .iterate(...(taskId ? [taskId] : [])) as IterableIterator<StoredEventRow>;
  const problems: ChainProblem[] = [];
  let tasks = 0;
  let events = 0;
  let current: string | undefined;
  let expectedSeq = 1;
  let prev = GENESIS_HASH;
  let broken = false;
  // Payloads found missing, settled at the end of the task against the purges its chain records.
  let missing: Array<{ seq: number; type: string }> = [];
  let purged = new Set<number>();
  const settleMissing = () => {
    if (current === undefined || broken) return;
    const uncovered = missing.find((m) => !purged.has(m.seq));
    if (uncovered) {
      problems.push({
        taskId: current,
        seq: uncovered.seq,
        problem: `the text of event ${uncovered.seq} (${uncovered.type}) is gone and no audit.purged event records its purge`,
      });
    }
  };
  for (const row of rows) {
    events++;
    if (row.task_id !== current) {
      settleMissing();
      current = row.task_id;
      tasks++;
      expectedSeq = 1;
      prev = GENESIS_HASH;
      broken = false;
      missing = [];
      purged = new Set();
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
    if (row.type === 'audit.purged') {
      for (const seq of purgedSeqs(row.data_json)) purged.add(seq);
    }
    const digest = isConversationType(row.type) ? contentDigest(row.data_json) : undefined;
    if (digest && row.payload_json != null) {
      const actual = createHash('sha256').update(row.payload_json).digest('hex');
      if (actual !== digest.sha256)
        fail(`the text of event ${row.seq} (${row.type}) was changed after it was written`);
    } else if (digest?.kept) {
      missing.push({ seq: row.seq, type: row.type });
    } else if (!digest && row.payload_json != null) {
      fail(`event ${row.seq} (${row.type}) has a stored text it never had`);
    }
  }
  settleMissing();
  // Approvals are checked against chains that hold: a broken chain is already the finding.
  const brokenTasks = new Set(problems.map((p) => p.taskId));
  problems.push(...verifyApprovals(db, taskId).filter((p) => !brokenTasks.has(p.taskId)));
  return { ok: problems.length === 0, tasks, events, problems };
}

function contentDigest(dataJson: string): { sha256: string; kept: boolean } | undefined {
  const value = (JSON.parse(dataJson) as Record<string, unknown>)[CONTENT_KEY] as
    | { sha256?: unknown; kept?: unknown }
    | undefined;
  return value && typeof value.sha256 === 'string'
    ? { sha256: value.sha256, kept: value.kept === true }
    : undefined;
}

function purgedSeqs(dataJson: string): number[] {
  const value = (JSON.parse(dataJson) as { purged?: unknown }).purged;
  return Array.isArray(value) ? value.filter((n): n is number => typeof n === 'number') : [];
}
