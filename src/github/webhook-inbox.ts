import { createHash } from 'node:crypto';
import { z } from 'zod';
import { type Clock, daysBefore } from '../clock.ts';
import type { Store } from '../store/database.ts';

/** A stored delivery waiting to be dispatched. */
export interface InboxDelivery {
  deliveryId: string;
  event: string;
  /** The body as GitHub sent it (verified, valid JSON). */
  payload: string;
  receivedAt: string;
  /** The W3C traceparent of the listener's span for it (null without one). */
  traceParent: string | null;
}

/** A waiting row as read back: its body is there until it is dispatched. */
const WaitingRow = z.object({
  delivery_id: z.string(),
  event: z.string(),
  payload: z.string(),
  received_at: z.string(),
  trace_parent: z.string().nullable(),
});

/**
 * The channel told when a delivery is stored, so the dispatcher of every process on the database
 * looks at once (each also polls).
 */
export const INBOX_CHANNEL = 'airlock_webhooks';

/**
 * How long a dispatched delivery's row is kept as the record that its id was seen. GitHub lets
 * people redeliver a delivery for three days; a month leaves a wide margin.
 */
export const INBOX_KEEP_DAYS = 30;

/**
 * Verified webhook deliveries, stored before GitHub is answered and dispatched afterwards.
 * Storing is one INSERT keyed by the delivery id (and the body's digest), so a redelivery is
 * recognised at once, by the database's unique keys, whichever process received either copy; and
 * nothing slower than that stands between GitHub and its answer.
 */
export class WebhookInbox {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /**
   * Stores a delivery; 'duplicate' when its id, or the same body under another id, was stored
   * before (a captured signed body re-posted with a new delivery id is the same request).
   * `traceParent` is the delivery's trace, continued by the stages after this one.
   */
  async store(
    deliveryId: string,
    event: string,
    payload: string,
    traceParent?: string,
  ): Promise<'stored' | 'duplicate'> {
    const result = await this.#store.db
      .insertInto('webhook_inbox')
      .values({
        delivery_id: deliveryId,
        event,
        payload,
        body_sha256: createHash('sha256').update(payload).digest('hex'),
        received_at: this.#clock.now().toISOString(),
        trace_parent: traceParent ?? null,
      })
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    return result.numInsertedOrUpdatedRows === 1n ? 'stored' : 'duplicate';
  }

  /** Deliveries not yet dispatched, oldest first (a look: dispatching takes them with next()). */
  async waiting(limit: number): Promise<InboxDelivery[]> {
    const rows = await this.#waitingRows().limit(limit).execute();
    return rows.map(rowToDelivery);
  }

  /**
   * Takes the oldest delivery not yet dispatched for the caller's transaction, which marks it
   * done() before it commits. On PostgreSQL the row stays locked until then and other processes'
   * dispatchers skip it (FOR UPDATE SKIP LOCKED); on SQLite the one connection serialises them.
   */
  async next(): Promise<InboxDelivery | undefined> {
    if (!this.#store.inTransaction()) throw new Error('WebhookInbox.next() runs inside a transaction');
    const oldest = this.#waitingRows().limit(1);
    const row = await (this.#store.dialect === 'postgres'
      ? oldest.forUpdate().skipLocked()
      : oldest
    ).executeTakeFirst();
    return row ? rowToDelivery(row) : undefined;
  }

  /** Marks a delivery dispatched (or given up, with the error) and drops its body. */
  async done(deliveryId: string, error?: string): Promise<void> {
    await this.#store.db
      .updateTable('webhook_inbox')
      .set({ dispatched_at: this.#clock.now().toISOString(), payload: null, error: error ?? null })
      .where('delivery_id', '=', deliveryId)
      .execute();
  }

  /**
   * Deletes the rows of deliveries dispatched and received more than `keepDays` ago; rows still
   * waiting are never deleted. Returns how many went.
   */
  async prune(keepDays = INBOX_KEEP_DAYS): Promise<number> {
    const result = await this.#store.db
      .deleteFrom('webhook_inbox')
      .where('dispatched_at', 'is not', null)
      .where('received_at', '<', daysBefore(this.#clock, keepDays))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  #waitingRows() {
    return this.#store.db
      .selectFrom('webhook_inbox')
      .select(['delivery_id', 'event', 'payload', 'received_at', 'trace_parent'])
      .where('dispatched_at', 'is', null)
      .orderBy('received_at')
      .orderBy('delivery_id');
  }
}

function rowToDelivery(row: unknown): InboxDelivery {
  const r = WaitingRow.parse(row);
  return {
    deliveryId: r.delivery_id,
    event: r.event,
    payload: r.payload,
    receivedAt: r.received_at,
    traceParent: r.trace_parent,
  };
}
