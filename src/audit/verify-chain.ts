import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Store } from '../store/database.ts';
import {
  CONTENT_KEY,
  eventHash,
  GENESIS_HASH,
  isConversationType,
  type StoredEventRow,
} from './audit-event.ts';
import { selectStoredEvents } from './audit-queries.ts';
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
export async function verifyAuditChains(store: Store, taskId?: string): Promise<VerifyReport> {
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
  for await (const row of storedEvents(store, taskId)) {
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
  problems.push(...(await verifyApprovals(store, taskId)).filter((p) => !brokenTasks.has(p.taskId)));
  return { ok: problems.length === 0, tasks, events, problems };
}

/** Rows of audit_events read at once while verifying: every chain need not fit in memory. */
const VERIFY_PAGE_ROWS = 5000;

/** Stored events with their texts, in (task, seq) order, read a page at a time after the last row. */
async function* storedEvents(store: Store, taskId: string | undefined): AsyncGenerator<StoredEventRow> {
  let after: { taskId: string; seq: number } | undefined;
  for (;;) {
    const rows: StoredEventRow[] = await selectStoredEvents(store.db)
      .$if(taskId !== undefined, (q) => q.where('e.task_id', '=', taskId!))
      .$if(after !== undefined, (q) =>
        q.where(sql<boolean>`(e.task_id, e.seq) > (${after!.taskId}, ${after!.seq})`),
      )
      .orderBy('e.task_id')
      .orderBy('e.seq')
      .limit(VERIFY_PAGE_ROWS)
      .execute();
    yield* rows;
    const last = rows.at(-1);
    if (!last || rows.length < VERIFY_PAGE_ROWS) return;
    after = { taskId: last.task_id, seq: last.seq };
  }
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
