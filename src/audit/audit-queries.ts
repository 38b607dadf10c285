import { type RawBuilder, sql } from 'kysely';
import type { Kdb, Store } from '../store/database.ts';
import { jsonText } from '../store/json-text.ts';
import { type AuditEvent, storedRowToEvent } from './audit-event.ts';

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

/** The stored events (`audit_events` as `e`) with their kept texts, as storedRowToEvent reads them. */
export function selectStoredEvents(db: Kdb) {
  return db
    .selectFrom('audit_events as e')
    .leftJoin('audit_payloads as p', (join) =>
      join.onRef('p.task_id', '=', 'e.task_id').onRef('p.seq', '=', 'e.seq'),
    )
    .select([
      'e.task_id',
      'e.seq',
      'e.ts',
      'e.type',
      'e.data_json',
      'e.prev_hash',
      'e.hash',
      'p.data_json as payload_json',
    ]);
}

/**
 * The SQL behind {@link AuditLog}'s reads, on either database. It reads only what is committed
 * (or written in the caller's transaction): AuditLog commits the events waiting for a group
 * commit before it asks.
 */
export class AuditQueries {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** A page of a task's events in chain order. */
  async events(taskId: string, page: EventPage, filter: EventFilter): Promise<AuditEvent[]> {
    const limit = page.limit ?? 1_000_000;
    const query = this.#withPayloads()
      .where('e.task_id', '=', taskId)
      .where('e.seq', '>', page.afterSeq ?? 0)
      .where(this.#filter(filter));
    if (page.beforeSeq !== undefined) {
      // Backwards: the `limit` events just before `beforeSeq`, returned in chain order.
      const rows = await query
        .where('e.seq', '<', page.beforeSeq)
        .orderBy('e.seq', 'desc')
        .limit(limit)
        .execute();
      return rows.map(storedRowToEvent).reverse();
    }
    return (await query.orderBy('e.seq').limit(limit).execute()).map(storedRowToEvent);
  }

  /** The latest event matching a filter. */
  async latest(taskId: string, filter: EventFilter): Promise<AuditEvent | undefined> {
    const row = await this.#withPayloads()
      .where('e.task_id', '=', taskId)
      .where(this.#filter(filter))
      .orderBy('e.seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? storedRowToEvent(row) : undefined;
  }

  /** How many of a task's events there are of each type. */
  async typeCounts(taskId: string): Promise<Map<string, number>> {
    const rows = await this.#store.db
      .selectFrom('audit_events')
      .select(['type', (eb) => eb.fn.countAll<number>().as('n')])
      .where('task_id', '=', taskId)
      .groupBy('type')
      .orderBy('type')
      .execute();
    return new Map(rows.map((r) => [r.type, Number(r.n)]));
  }

  /** The sequence numbers of a task's events that match a filter (e.g. its refusals). */
  async seqs(taskId: string, filter: EventFilter, limit: number): Promise<number[]> {
    const rows = await this.#store.db
      .selectFrom('audit_events as e')
      .select('e.seq')
      .where('e.task_id', '=', taskId)
      .where(this.#filter(filter))
      .orderBy('e.seq')
      .limit(limit)
      .execute();
    return rows.map((r) => r.seq);
  }

  /** The chain's head as this transaction (or, outside one, the database) sees it. */
  async head(taskId: string): Promise<{ seq: number; hash: string } | undefined> {
    return this.#store.db
      .selectFrom('audit_events')
      .select(['seq', 'hash'])
      .where('task_id', '=', taskId)
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** The kept prompt and model-response texts of a task: their events' numbers and sizes. */
  async keptTexts(taskId: string): Promise<Array<{ seq: number; bytes: number }>> {
    const rows = await this.#store.db
      .selectFrom('audit_payloads')
      .select(['seq', sql<number>`length(data_json)`.as('bytes')])
      .where('task_id', '=', taskId)
      .orderBy('seq')
      .execute();
    return rows.map((r) => ({ seq: r.seq, bytes: Number(r.bytes) }));
  }

  /** Deletes kept texts (the database refuses unless the chain records their purge first). */
  async deleteTexts(taskId: string, seqs: readonly number[]): Promise<void> {
    await this.#store.db
      .deleteFrom('audit_payloads')
      .where('task_id', '=', taskId)
      .where('seq', 'in', seqs)
      .execute();
  }

  #withPayloads() {
    return selectStoredEvents(this.#store.db);
  }

  /** The SQL condition for a filter, over `audit_events` as `e`. */
  #filter(filter: EventFilter): RawBuilder<boolean> {
    const parts: RawBuilder<unknown>[] = [];
    if (filter.types)
      parts.push(filter.types.length ? sql`e.type IN (${sql.join(filter.types)})` : sql`1 = 0`);
    if (filter.excludeTypes?.length) parts.push(sql`e.type NOT IN (${sql.join(filter.excludeTypes)})`);
    if (filter.refusals) {
      // The same condition as isRefusalEvent (refusals are never conversation events, so their
      // data is in data_json itself).
      const decision = jsonText(this.#store.dialect, 'e.data_json', 'decision');
      parts.push(sql`(${decision} = 'refused' OR e.type IN (${sql.join(REFUSAL_TYPES)}))`);
    }
    return parts.length ? sql<boolean>`${sql.join(parts, sql` AND `)}` : sql<boolean>`1 = 1`;
  }
}
