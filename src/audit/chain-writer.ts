import { CompiledQuery, sql } from 'kysely';
import type { Kdb, Store } from '../store/database.ts';
import { eventHash, GENESIS_HASH } from './audit-event.ts';

/** An event ready to be linked into its task's chain: what the chain hashes, and its kept text. */
export interface ChainEvent {
  taskId: string;
  ts: string;
  type: string;
  /** The data as the chain stores and hashes it. */
  storedJson: string;
  /** The kept text of a conversation event, stored beside the chain. */
  payloadJson: string | undefined;
}

/** An event's place in its chain. */
export interface ChainLink {
  seq: number;
  prevHash: string;
  hash: string;
}

/** What {@link writeChains} did with each event. */
export interface ChainWrite<E> {
  /** Linked after their chain's head and inserted, in the order given. */
  written: Array<{ event: E; link: ChainLink }>;
  /** Already stored where `storedAt` said they might be (by a transaction that committed). */
  found: Array<{ event: E; link: ChainLink }>;
}

/** How {@link writeChains} reads what is already stored. */
export interface ChainReads<E> {
  /**
   * Where a chain's head is read: in a READ COMMITTED transaction (the group commit's), the
   * transaction itself, whose statements after the locks see what committed while it waited. In a
   * caller's transaction, whose snapshot may be older than the locks (serializable, on
   * PostgreSQL), Store.committed, except for chains this transaction has written already: only it
   * sees those rows.
   */
  from(taskId: string): Kdb;
  /**
   * For an event another transaction of this process wrote without knowing yet whether that
   * committed, where it put it: the event is left out if the chain holds it there. Asked once the
   * chain's lock (SQLite: the database's) is held, so the last writer before has recorded it by then.
   */
  storedAt?(event: E): ChainLink | undefined;
  /**
   * SQLite only: the head this writer saw at its last commit to the chain, used instead of reading
   * it. If another writer appended since, the first insert finds the place taken; the head is then
   * read and the events linked again.
   */
  remembered?(taskId: string): { seq: number; hash: string } | undefined;
}

/**
 * Writes events to their tasks' chains in the current transaction. On PostgreSQL it first takes
 * each task's lock (a transaction-scoped advisory lock, in task-id order), so that two processes
 * writing one chain (a worker's VM and proxy events, the control plane's GitHub events) take
 * turns; on SQLite the one writer at a time is the database's own rule. Then it reads each chain's
 * head, links the events after it in the order given, and inserts them with their texts.
 */
export async function writeChains<E extends ChainEvent>(
  store: Store,
  events: readonly E[],
  reads: ChainReads<E>,
): Promise<ChainWrite<E>> {
  const result: ChainWrite<E> = { written: [], found: [] };
  const byTask = new Map<string, E[]>();
  for (const e of events) {
    const list = byTask.get(e.taskId);
    if (list) list.push(e);
    else byTask.set(e.taskId, [e]);
  }
  const taskIds = [...byTask.keys()].sort();
  if (taskIds.length === 0) return result;
  if (store.dialect === 'sqlite') {
    for (const taskId of taskIds) {
      const pending = await leaveOutStored(reads, taskId, byTask.get(taskId)!, result);
      result.written.push(...(await writeSqliteChain(store, taskId, pending, reads)));
    }
    return result;
  }
  await lockChains(store, taskIds);
  const heads = await postgresHeads(taskIds, reads.from);
  const rows: Array<{ event: E; link: ChainLink }> = [];
  for (const taskId of taskIds) {
    const pending = await leaveOutStored(reads, taskId, byTask.get(taskId)!, result);
    rows.push(...linked(taskId, heads.get(taskId), pending));
  }
  try {
    await insertPostgres(store, rows);
  } catch (error) {
    throw chainMoved(error);
  }
  result.written = rows;
  return result;
}

/**
 * PostgreSQL: takes the tasks' chain locks (transaction-scoped advisory locks) in the current
 * transaction, waiting for any other transaction holding one to end. Give the ids sorted.
 */
export async function lockChains(store: Store, taskIds: readonly string[]): Promise<void> {
  // One statement: the locks are taken in the array's order, so two writers never wait on each
  // other crosswise (PostgreSQL would detect it, and the transaction would be run again).
  await sql`SELECT count(pg_advisory_xact_lock(hashtext('airlock.audit'), hashtext(t)))
            FROM unnest(${taskIds}::text[]) WITH ORDINALITY AS u (t, i)`.execute(store.db);
}

/** Events linked one after the other, from a chain's head (none: the chain starts with them). */
function linked<E extends ChainEvent>(
  taskId: string,
  from: { seq: number; hash: string } | undefined,
  events: readonly E[],
): Array<{ event: E; link: ChainLink }> {
  let head = from ?? { seq: 0, hash: GENESIS_HASH };
  return events.map((event) => {
    const seq = head.seq + 1;
    const hash = eventHash({
      taskId,
      seq,
      ts: event.ts,
      type: event.type,
      dataJson: event.storedJson,
      prevHash: head.hash,
    });
    const link = { seq, prevHash: head.hash, hash };
    head = { seq, hash };
    return { event, link };
  });
}

/**
 * One task's events on SQLite, a statement a row (the same text each time, so prepared once: its
 * multi-row VALUES costs more than the rows one by one), after the head the writer remembers or,
 * failing that, reads.
 */
async function writeSqliteChain<E extends ChainEvent>(
  store: Store,
  taskId: string,
  events: readonly E[],
  reads: ChainReads<E>,
): Promise<Array<{ event: E; link: ChainLink }>> {
  if (events.length === 0) return [];
  const remembered = reads.remembered?.(taskId);
  let rows = linked(taskId, remembered ?? (await sqliteHead(reads.from(taskId), taskId)), events);
  try {
    await insertSqliteEvent(store, rows[0]!);
  } catch (error) {
    // Another writer appended since this one's last commit: the head, read, is further on.
    if (!remembered || (error as { code?: unknown }).code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw error;
    rows = linked(taskId, await sqliteHead(reads.from(taskId), taskId), events);
    await insertSqliteEvent(store, rows[0]!);
  }
  for (const row of rows.slice(1)) await insertSqliteEvent(store, row);
  for (const { event, link } of rows) {
    if (event.payloadJson === undefined) continue;
    await store.db.executeQuery(CompiledQuery.raw(INSERT_TEXT, [event.taskId, link.seq, event.payloadJson]));
  }
  return rows;
}

// The hot statements of SQLite's group commit, written once: built and compiled by the query
// builder for each row they cost about 8 µs of CPU an event more (measured with bench/audit.ts's
// pattern of appends). They run through the store all the same, in its current transaction.
const INSERT_EVENT =
  'INSERT INTO audit_events (task_id, seq, ts, type, data_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)';
const INSERT_TEXT = 'INSERT INTO audit_payloads (task_id, seq, data_json) VALUES (?, ?, ?)';

async function insertSqliteEvent(store: Store, { event, link }: { event: ChainEvent; link: ChainLink }) {
  const values = [event.taskId, link.seq, event.ts, event.type, event.storedJson, link.prevHash, link.hash];
  await store.db.executeQuery(CompiledQuery.raw(INSERT_EVENT, values));
}

/** A chain's latest event on SQLite: one index lookup. */
async function sqliteHead(db: Kdb, taskId: string): Promise<{ seq: number; hash: string } | undefined> {
  const { rows } = await sql<{ seq: number; hash: string }>`SELECT seq, hash FROM audit_events
    WHERE task_id = ${taskId} ORDER BY seq DESC LIMIT 1`.execute(db);
  return rows[0];
}

/**
 * A chain's next place already taken means another writer extended it after this transaction
 * read its head: on PostgreSQL, a serializable transaction (a caller's) reads the head as of its
 * snapshot, which may be older than the commit it waited for at the lock. That is a conflict to
 * resolve by running the transaction again (Store.transaction does, on this code), not an error.
 */
function chainMoved(error: unknown): unknown {
  const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  if (code !== '23505' || typeof constraint !== 'string' || !constraint.startsWith('audit_')) return error;
  return Object.assign(
    new Error('another writer extended an audit chain since this transaction began', { cause: error }),
    { code: '40001' },
  );
}

/** Inserts linked events and their texts on PostgreSQL: one statement a table, whatever the count. */
async function insertPostgres(
  store: Store,
  rows: Array<{ event: ChainEvent; link: ChainLink }>,
): Promise<void> {
  if (rows.length === 0) return;
  const column = <T>(pick: (r: { event: ChainEvent; link: ChainLink }) => T) => rows.map(pick);
  await sql`INSERT INTO audit_events (task_id, seq, ts, type, data_json, prev_hash, hash)
    SELECT * FROM unnest(${column((r) => r.event.taskId)}::text[], ${column((r) => r.link.seq)}::bigint[],
      ${column((r) => r.event.ts)}::text[], ${column((r) => r.event.type)}::text[],
      ${column((r) => r.event.storedJson)}::text[], ${column((r) => r.link.prevHash)}::text[],
      ${column((r) => r.link.hash)}::text[])`.execute(store.db);
  const texts = rows.filter((r) => r.event.payloadJson !== undefined);
  if (texts.length === 0) return;
  await sql`INSERT INTO audit_payloads (task_id, seq, data_json)
    SELECT * FROM unnest(${texts.map((r) => r.event.taskId)}::text[], ${texts.map((r) => r.link.seq)}::bigint[],
      ${texts.map((r) => r.event.payloadJson!)}::text[])`.execute(store.db);
}

/**
 * Each task's latest event on PostgreSQL, an index lookup a task (a GROUP BY or a join on max(seq)
 * would read every event of a long chain at each commit), one statement for each place they are
 * read from.
 */
async function postgresHeads(
  taskIds: readonly string[],
  from: (taskId: string) => Kdb,
): Promise<Map<string, { seq: number; hash: string }>> {
  const heads = new Map<string, { seq: number; hash: string }>();
  const bySource = new Map<Kdb, string[]>();
  for (const taskId of taskIds) {
    const db = from(taskId);
    bySource.set(db, [...(bySource.get(db) ?? []), taskId]);
  }
  for (const [db, ids] of bySource) {
    const { rows } = await sql<{ task_id: string; seq: number; hash: string }>`
      SELECT t.id AS task_id, h.seq, h.hash FROM unnest(${ids}::text[]) AS t (id)
      CROSS JOIN LATERAL (SELECT seq, hash FROM audit_events WHERE task_id = t.id ORDER BY seq DESC LIMIT 1) AS h
    `.execute(db);
    for (const r of rows) heads.set(r.task_id, { seq: Number(r.seq), hash: r.hash });
  }
  return heads;
}

/** The events of one task that are not already stored where `storedAt` says; the others go to `found`. */
async function leaveOutStored<E extends ChainEvent>(
  reads: ChainReads<E>,
  taskId: string,
  events: E[],
  result: ChainWrite<E>,
): Promise<E[]> {
  const claimed = events.flatMap((event) => {
    const link = reads.storedAt?.(event);
    return link ? [{ event, link }] : [];
  });
  if (claimed.length === 0) return events;
  const rows = await reads
    .from(taskId)
    .selectFrom('audit_events')
    .select(['seq', 'hash'])
    .where('task_id', '=', taskId)
    .where(
      'seq',
      'in',
      claimed.map((c) => c.link.seq),
    )
    .execute();
  const stored = new Map(rows.map((r) => [r.seq, r.hash]));
  const found = claimed.filter((c) => stored.get(c.link.seq) === c.link.hash);
  result.found.push(...found);
  const foundEvents = new Set(found.map((c) => c.event));
  return events.filter((e) => !foundEvents.has(e));
}
