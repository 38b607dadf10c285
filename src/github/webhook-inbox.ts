import { createHash } from 'node:crypto';
import { type Clock, daysBefore } from '../clock.ts';
import type { Db } from '../store/database.ts';

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

/**
 * How long a dispatched delivery's row is kept as the record that its id was seen. GitHub lets
 * people redeliver a delivery for three days; a month leaves a wide margin.
 */
export const INBOX_KEEP_DAYS = 30;

/**
 * Verified webhook deliveries, stored before GitHub is answered and dispatched afterwards.
 * Storing is one INSERT keyed by the delivery id, so a redelivery is recognised at once and
 * nothing slower than that stands between GitHub and its answer.
 */
export class WebhookInbox {
  readonly #clock: Clock;
  readonly #insert;
  readonly #waiting;
  readonly #dispatched;
  readonly #prune;

  constructor(db: Db, clock: Clock) {
    this.#clock = clock;
    this.#insert = db.prepare(
      `INSERT INTO webhook_inbox (delivery_id, event, payload, body_sha256, received_at, trace_parent) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    );
    this.#waiting = db.prepare(
      `SELECT delivery_id, event, payload, received_at, trace_parent FROM webhook_inbox
       WHERE dispatched_at IS NULL ORDER BY received_at, rowid LIMIT ?`,
    );
    this.#dispatched = db.prepare(
      'UPDATE webhook_inbox SET dispatched_at = ?, payload = NULL, error = ? WHERE delivery_id = ?',
    );
    this.#prune = db.prepare('DELETE FROM webhook_inbox WHERE dispatched_at IS NOT NULL AND received_at < ?');
  }

  /**
   * Stores a delivery; 'duplicate' when its id, or the same body under another id, was stored
   * before (a captured signed body re-posted with a new delivery id is the same request).
   * `traceParent` is the delivery's trace, continued by the stages after this one.
   */
  store(deliveryId: string, event: string, payload: string, traceParent?: string): 'stored' | 'duplicate' {
    const at = this.#clock.now().toISOString();
    const digest = createHash('sha256').update(payload).digest('hex');
    const inserted = this.#insert.run(deliveryId, event, payload, digest, at, traceParent ?? null);
    return inserted.changes === 1 ? 'stored' : 'duplicate';
  }

  /** Deliveries not yet dispatched, oldest first. */
  waiting(limit: number): InboxDelivery[] {
    return (
      this.#waiting.all(limit) as Array<{
        delivery_id: string;
        event: string;
        payload: string;
        received_at: string;
        trace_parent: string | null;
      }>
    ).map((r) => ({
      deliveryId: r.delivery_id,
      event: r.event,
      payload: r.payload,
      receivedAt: r.received_at,
      traceParent: r.trace_parent,
    }));
  }

  /** Marks a delivery dispatched (or given up, with the error) and drops its body. */
  done(deliveryId: string, error?: string): void {
    this.#dispatched.run(this.#clock.now().toISOString(), error ?? null, deliveryId);
  }

  /**
   * Deletes the rows of deliveries dispatched and received more than `keepDays` ago; rows still
   * waiting are never deleted. Returns how many went.
   */
  prune(keepDays = INBOX_KEEP_DAYS): number {
    return this.#prune.run(daysBefore(this.#clock, keepDays)).changes;
  }
}
