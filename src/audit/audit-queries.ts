import type Database from 'better-sqlite3';
import type { Db } from '../store/database.ts';
import { type AuditEvent, type StoredEventRow, storedRowToEvent } from './audit-event.ts';

/** Which events of a task to read: by type, or only the refusals. */
export interface EventFilter {
  /** Only events of these types. */
  types?: readonly string[] | undefined;
  /** Leave out events of these types (the exec audit's thousands of rows, for a summary). */
  excludeTypes?: readonly string[] | undefined;
  /** Only what a proxy or policy refused (see {@link isRefusalEvent}). */
  refusals?: boolean | undefined;
}

/** A page of a task's events: after one sequence number (forwards) or before one (backwards). */
export interface EventPage {
  afterSeq?: number | undefined;
  beforeSeq?: number | undefined;
  limit?: number | undefined;
}

/** Event types that are refusals whatever their data says. */
const REFUSAL_TYPES = ['proxy.refused', 'proxy.budget_exceeded'];

/** Whether an event records something a proxy or policy refused. */
export function isRefusalEvent(event: Pick<AuditEvent, 'type' | 'data'>): boolean {
  return event.data.decision === 'refused' || REFUSAL_TYPES.includes(event.type);
}

// The same condition as isRefusalEvent, in SQL (refusals are never conversation events, so their
// data is in data_json itself).
const REFUSAL_SQL = `(json_extract(e.data_json, '$.decision') = 'refused' OR e.type IN (${REFUSAL_TYPES.map((t) => `'${t}'`).join(', ')}))`;

const EVENT_COLUMNS = `e.task_id, e.seq, e.ts, e.type, e.data_json, e.prev_hash, e.hash, p.data_json AS payload_json
  FROM audit_events e LEFT JOIN audit_payloads p ON p.task_id = e.task_id AND p.seq = e.seq`;

function filterSql(filter: EventFilter): { sql: string; args: unknown[] } {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.types) {
    where.push(filter.types.length ? `e.type IN (${filter.types.map(() => '?').join(', ')})` : '0');
    args.push(...filter.types);
  }
  if (filter.excludeTypes?.length) {
    where.push(`e.type NOT IN (${filter.excludeTypes.map(() => '?').join(', ')})`);
    args.push(...filter.excludeTypes);
  }
  if (filter.refusals) where.push(REFUSAL_SQL);
  return { sql: where.length ? ` AND ${where.join(' AND ')}` : '', args };
}

/**
 * The SQL behind {@link AuditLog}'s reads. It reads only what is committed: AuditLog commits the
 * events waiting for a group commit before it asks.
 */
export class AuditQueries {
  readonly #db: Db;
  readonly #head;
  readonly #keptTexts;
  readonly #deleteText;
  /** Prepared statements by SQL text: the filter shapes pages use are few. */
  readonly #statements = new Map<string, Database.Statement<unknown[]>>();

  constructor(db: Db) {
    this.#db = db;
    this.#head = db.prepare('SELECT seq, hash FROM audit_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1');
    this.#keptTexts = db.prepare(
      'SELECT seq, length(data_json) AS bytes FROM audit_payloads WHERE task_id = ? ORDER BY seq',
    );
    this.#deleteText = db.prepare('DELETE FROM audit_payloads WHERE task_id = ? AND seq = ?');
  }

  #prepare(sql: string): Database.Statement<unknown[]> {
    let statement = this.#statements.get(sql);
    if (!statement) {
      if (this.#statements.size >= 200) this.#statements.clear();
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** A page of a task's events in chain order. */
  events(taskId: string, page: EventPage, filter: EventFilter): AuditEvent[] {
    const f = filterSql(filter);
    const limit = page.limit ?? 1_000_000;
    if (page.beforeSeq !== undefined) {
      // Backwards: the `limit` events just before `beforeSeq`, returned in chain order.
      return this.#prepare(
        `SELECT ${EVENT_COLUMNS} WHERE e.task_id = ? AND e.seq < ? AND e.seq > ?${f.sql} ORDER BY e.seq DESC LIMIT ?`,
      )
        .all(taskId, page.beforeSeq, page.afterSeq ?? 0, ...f.args, limit)
        .map((row) => storedRowToEvent(row as StoredEventRow))
        .reverse();
    }
    return this.#prepare(
      `SELECT ${EVENT_COLUMNS} WHERE e.task_id = ? AND e.seq > ?${f.sql} ORDER BY e.seq LIMIT ?`,
    )
      .all(taskId, page.afterSeq ?? 0, ...f.args, limit)
      .map((row) => storedRowToEvent(row as StoredEventRow));
  }

  /** The latest event matching a filter. */
  latest(taskId: string, filter: EventFilter): AuditEvent | undefined {
    const f = filterSql(filter);
    const row = this.#prepare(
      `SELECT ${EVENT_COLUMNS} WHERE e.task_id = ?${f.sql} ORDER BY e.seq DESC LIMIT 1`,
    ).get(taskId, ...f.args);
    return row ? storedRowToEvent(row as StoredEventRow) : undefined;
  }

  /** How many of a task's events there are of each type. */
  typeCounts(taskId: string): Map<string, number> {
    const rows = this.#prepare(
      'SELECT type, count(*) AS n FROM audit_events WHERE task_id = ? GROUP BY type ORDER BY type',
    ).all(taskId) as Array<{ type: string; n: number }>;
    return new Map(rows.map((r) => [r.type, r.n]));
  }

  /** The sequence numbers of a task's events that match a filter (e.g. its refusals). */
  seqs(taskId: string, filter: EventFilter, limit: number): number[] {
    const f = filterSql(filter);
    return (
      this.#prepare(
        `SELECT e.seq FROM audit_events e WHERE e.task_id = ?${f.sql} ORDER BY e.seq LIMIT ?`,
      ).all(taskId, ...f.args, limit) as Array<{ seq: number }>
    ).map((r) => r.seq);
  }

  /** The chain's committed head. */
  head(taskId: string): { seq: number; hash: string } | undefined {
    return this.#head.get(taskId) as { seq: number; hash: string } | undefined;
  }

  /** The kept prompt and model-response texts of a task: their events' numbers and sizes. */
  keptTexts(taskId: string): Array<{ seq: number; bytes: number }> {
    return this.#keptTexts.all(taskId) as Array<{ seq: number; bytes: number }>;
  }

  /** Deletes one kept text (the database refuses unless the chain records the purge first). */
  deleteText(taskId: string, seq: number): void {
    this.#deleteText.run(taskId, seq);
  }
}
