import { sql } from 'kysely';
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

/** Rows per INSERT statement (SQLite allows 32,766 bound values; 7 a row). */
const ROWS_PER_INSERT = 200;

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
   * For an event an earlier transaction of this process wrote without knowing yet whether that
   * committed, where it put it: the event is left out if the chain holds it there.
   */
  storedAt?(event: E): ChainLink | undefined;
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
  if (events.length === 0) return result;
  const byTask = new Map<string, E[]>();
  for (const e of events) {
    const list = byTask.get(e.taskId);
    if (list) list.push(e);
    else byTask.set(e.taskId, [e]);
  }
  const taskIds = [...byTask.keys()].sort();
  if (store.dialect === 'postgres') {
    // One statement: the locks are taken in the array's order, so two writers never wait on each
    // other crosswise (PostgreSQL would detect it, and the transaction would be run again).
    await sql`SELECT count(pg_advisory_xact_lock(hashtext('airlock.audit'), hashtext(t)))
              FROM unnest(${taskIds}::text[]) WITH ORDINALITY AS u (t, i)`.execute(store.db);
  }
  const heads = await chainHeads(taskIds, reads.from);
  const rows: Array<{ event: E; link: ChainLink }> = [];
  for (const taskId of taskIds) {
    let head = heads.get(taskId) ?? { seq: 0, hash: GENESIS_HASH };
    for (const event of await leaveOutStored(reads, taskId, byTask.get(taskId)!, result)) {
      const seq = head.seq + 1;
      const hash = eventHash({
        taskId,
        seq,
        ts: event.ts,
        type: event.type,
        dataJson: event.storedJson,
        prevHash: head.hash,
      });
      rows.push({ event, link: { seq, prevHash: head.hash, hash } });
      head = { seq, hash };
    }
  }
  try {
    await insertRows(store, rows);
  } catch (error) {
    throw chainMoved(error);
  }
  result.written = rows;
  return result;
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

async function insertRows(store: Store, rows: Array<{ event: ChainEvent; link: ChainLink }>): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + ROWS_PER_INSERT);
    await store.db
      .insertInto('audit_events')
      .values(
        chunk.map(({ event, link }) => ({
          task_id: event.taskId,
          seq: link.seq,
          ts: event.ts,
          type: event.type,
          data_json: event.storedJson,
          prev_hash: link.prevHash,
          hash: link.hash,
        })),
      )
      .execute();
  }
  const texts = rows.filter((r) => r.event.payloadJson !== undefined);
  for (let i = 0; i < texts.length; i += ROWS_PER_INSERT) {
    await store.db
      .insertInto('audit_payloads')
      .values(
        texts.slice(i, i + ROWS_PER_INSERT).map(({ event, link }) => ({
          task_id: event.taskId,
          seq: link.seq,
          data_json: event.payloadJson!,
        })),
      )
      .execute();
  }
}

/**
 * Each task's latest event, one statement for each place they are read from: two index lookups
 * a task (a GROUP BY or a join on max(seq) would read every event of a long chain, each commit).
 */
async function chainHeads(
  taskIds: readonly string[],
  from: (taskId: string) => Kdb,
): Promise<Map<string, { seq: number; hash: string }>> {
  const bySource = new Map<Kdb, string[]>();
  for (const taskId of taskIds) {
    const db = from(taskId);
    bySource.set(db, [...(bySource.get(db) ?? []), taskId]);
  }
  const heads = new Map<string, { seq: number; hash: string }>();
  for (const [db, ids] of bySource) {
    const latest = (column: 'seq' | 'hash') =>
      sql`(SELECT ${sql.ref(column)} FROM audit_events WHERE task_id = v.column1 ORDER BY seq DESC LIMIT 1)`;
    const { rows } = await sql<{ task_id: string; seq: number | null; hash: string | null }>`
      SELECT v.column1 AS task_id, ${latest('seq')} AS seq, ${latest('hash')} AS hash
      FROM (VALUES ${sql.join(ids.map((id) => sql`(${id})`))}) AS v`.execute(db);
    for (const r of rows)
      if (r.seq !== null && r.hash !== null) heads.set(r.task_id, { seq: Number(r.seq), hash: r.hash });
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
