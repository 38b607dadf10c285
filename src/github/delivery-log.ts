import { z } from 'zod';
import { type Clock, daysBefore } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import { type RetryDecision, retryAfterFailure } from '../store/backoff.ts';
import type { Db } from '../store/database.ts';
import { Intent } from './webhook-intent.ts';

export const DeliveryStatus = z.enum(['pending', 'done', 'ignored', 'refused', 'failed']);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;

/** A stored delivery waiting for (or done with) intake. */
export const StoredDelivery = z.object({
  deliveryId: z.string(),
  intent: Intent,
  status: DeliveryStatus,
  attempts: z.number(),
  /** When airlock stored the delivery: the moment of the request, for freezing what was asked. */
  receivedAt: z.string(),
  /** The W3C traceparent intake continues the delivery's trace from (null for none). */
  traceParent: z.string().nullable(),
});
export type StoredDelivery = z.infer<typeof StoredDelivery>;

/**
 * Webhook deliveries, deduplicated by GitHub's delivery id. Recording is one indexed INSERT, so
 * it fits in the webhook handler; everything slow happens in the intake worker afterwards.
 */
export class DeliveryLog {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #insert;
  readonly #prune;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#insert = db.prepare(
      `INSERT INTO deliveries (delivery_id, event, action, installation_id, repo_full_name, intent_json, status, received_at, trace_parent)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (delivery_id) DO NOTHING`,
    );
    this.#prune = db.prepare("DELETE FROM deliveries WHERE status <> 'pending' AND received_at < ?");
  }

  /**
   * Deletes processed deliveries received more than `keepDays` ago; pending ones are never
   * deleted. A task keeps its own delivery id, so nothing a task's record needs goes with them.
   * Returns how many went.
   */
  prune(keepDays: number): number {
    return this.#prune.run(daysBefore(this.#clock, keepDays)).changes;
  }

  /**
   * Stores an intent; returns 'duplicate' when this delivery id was seen before. `receivedAt` is
   * when the delivery reached airlock (the inbox's time), defaulting to now; `traceParent` the
   * span intake's span is to be a child of.
   */
  record(intent: Intent, receivedAt?: string, traceParent?: string): 'recorded' | 'duplicate' {
    const o = intent.origin;
    const result = this.#insert.run(
      o.deliveryId,
      o.event,
      o.action,
      o.installationId,
      o.repo.fullName,
      JSON.stringify(intent),
      receivedAt ?? this.#clock.now().toISOString(),
      traceParent ?? null,
    );
    return result.changes === 1 ? 'recorded' : 'duplicate';
  }

  /** Deliveries due for processing (pending, past any back-off), oldest first. */
  pending(limit = 50): StoredDelivery[] {
    return this.#db
      .prepare(
        `SELECT delivery_id, intent_json, status, attempts, received_at, trace_parent FROM deliveries
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= ?)
         ORDER BY received_at, rowid LIMIT ?`,
      )
      .all(this.#clock.now().toISOString(), limit)
      .map((row) => {
        const r = row as Record<string, unknown>;
        return StoredDelivery.parse({
          deliveryId: r.delivery_id,
          intent: JSON.parse(String(r.intent_json)),
          status: r.status,
          attempts: r.attempts,
          receivedAt: r.received_at,
          traceParent: r.trace_parent,
        });
      });
  }

  /** Marks a delivery processed with its outcome (and the task it created, if any). */
  finish(
    deliveryId: string,
    status: Exclude<DeliveryStatus, 'pending'>,
    outcome: string,
    taskId?: string,
  ): void {
    this.#db
      .prepare(
        `UPDATE deliveries SET status = ?, outcome = ?, task_id = ?, processed_at = ?, attempts = attempts + 1
         WHERE delivery_id = ?`,
      )
      .run(status, outcome, taskId ?? null, this.#clock.now().toISOString(), deliveryId);
  }

  /**
   * Counts a failed attempt: the delivery waits for its next attempt under the queues' one retry
   * policy, or is finished as failed once that policy gives up. Returns the decision.
   */
  retryLater(deliveryId: string, error: unknown): RetryDecision {
    const row = this.#db
      .prepare('SELECT attempts, received_at FROM deliveries WHERE delivery_id = ?')
      .get(deliveryId) as { attempts: number; received_at: string };
    const decision = retryAfterFailure(this.#clock, row.attempts + 1, row.received_at, error);
    if ('giveUp' in decision) {
      this.finish(deliveryId, 'failed', `${decision.giveUp}: ${errorMessage(error)}`);
      return decision;
    }
    this.#db
      .prepare(
        'UPDATE deliveries SET attempts = attempts + 1, outcome = ?, not_before = ? WHERE delivery_id = ?',
      )
      .run(errorMessage(error), decision.retryAt, deliveryId);
    return decision;
  }

  /** Whether any delivery is still pending (due now or waiting out a back-off). */
  hasPending(): boolean {
    return this.#db.prepare(`SELECT 1 FROM deliveries WHERE status = 'pending' LIMIT 1`).get() !== undefined;
  }

  /** The stored outcome of one delivery, for tests and the API. */
  get(
    deliveryId: string,
  ): { status: DeliveryStatus; outcome: string | null; taskId: string | null } | undefined {
    const row = this.#db
      .prepare('SELECT status, outcome, task_id FROM deliveries WHERE delivery_id = ?')
      .get(deliveryId) as
      | { status: DeliveryStatus; outcome: string | null; task_id: string | null }
      | undefined;
    return row ? { status: row.status, outcome: row.outcome, taskId: row.task_id } : undefined;
  }
}
