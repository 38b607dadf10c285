import { sql } from 'kysely';
import { z } from 'zod';
import { type Clock, daysBefore } from '../clock.ts';
import { ClaimLost, errorMessage } from '../errors.ts';
import { type RetryDecision, retryAfterFailure } from '../store/backoff.ts';
import { type Claim, leaseEnd, newClaim, releaseClaims, whileClaimed } from '../store/claim-lease.ts';
import type { Store } from '../store/database.ts';
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

/** A delivery this process has claimed for intake (see DeliveryLog.claim). */
export interface ClaimedDelivery extends StoredDelivery {
  claim: Claim;
}

/**
 * The channel told when a delivery is recorded, so the intake of every process on the database
 * looks at once (each also polls).
 */
export const DELIVERIES_CHANNEL = 'airlock_deliveries';

/**
 * Webhook deliveries, deduplicated by GitHub's delivery id. Recording is one indexed INSERT, so
 * it fits in the webhook dispatcher's transaction; everything slow happens in intake afterwards,
 * which claims one delivery at a time (see claim), so two processes never take in the same one.
 */
export class DeliveryLog {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /**
   * Deletes processed deliveries received more than `keepDays` ago; pending ones are never
   * deleted. A task keeps its own delivery id, so nothing a task's record needs goes with them.
   * Returns how many went.
   */
  async prune(keepDays: number): Promise<number> {
    const result = await this.#store.db
      .deleteFrom('deliveries')
      .where('status', '<>', 'pending')
      .where('received_at', '<', daysBefore(this.#clock, keepDays))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /**
   * Stores an intent; returns 'duplicate' when this delivery id was seen before. `receivedAt` is
   * when the delivery reached airlock (the inbox's time), defaulting to now; `traceParent` the
   * span intake's span is to be a child of.
   */
  async record(intent: Intent, receivedAt?: string, traceParent?: string): Promise<'recorded' | 'duplicate'> {
    const o = intent.origin;
    const result = await this.#store.db
      .insertInto('deliveries')
      .values({
        delivery_id: o.deliveryId,
        event: o.event,
        action: o.action,
        installation_id: o.installationId,
        repo_full_name: o.repo.fullName,
        intent_json: JSON.stringify(intent),
        status: 'pending',
        received_at: receivedAt ?? this.#clock.now().toISOString(),
        trace_parent: traceParent ?? null,
      })
      .onConflict((oc) => oc.column('delivery_id').doNothing())
      .executeTakeFirst();
    if (result.numInsertedOrUpdatedRows !== 1n) return 'duplicate';
    await this.#store.notify(DELIVERIES_CHANNEL);
    return 'recorded';
  }

  /**
   * Deliveries pending (past any back-off), oldest first, claimed ones included: a look, for
   * tests and settling; intake takes them with claim().
   */
  async pending(limit = 50): Promise<StoredDelivery[]> {
    const now = this.#clock.now().toISOString();
    const rows = await this.#store.db
      .selectFrom('deliveries')
      .select(['delivery_id', 'intent_json', 'status', 'attempts', 'received_at', 'trace_parent'])
      .where('status', '=', sql.lit('pending'))
      .where((eb) => eb.or([eb('not_before', 'is', null), eb('not_before', '<=', now)]))
      .orderBy('received_at')
      .orderBy('delivery_id')
      .limit(limit)
      .execute();
    return rows.map(rowToStored);
  }

  /**
   * Claims the oldest delivery due for intake for this process, or returns undefined when none is:
   * pending, past any back-off, not claimed by a process whose lease still runs, and with no other
   * delivery of its repository in intake anywhere, so the deliveries of one repository are taken
   * in order (a label removed after it was added cancels the task the first one started).
   * Claims are taken one at a time across processes (an advisory lock on PostgreSQL, the one
   * connection on SQLite), so that check sees every claim made before it.
   */
  async claim(): Promise<ClaimedDelivery | undefined> {
    const now = this.#clock.now().toISOString();
    const claim = newClaim(this.#clock);
    return this.#store.transaction(
      async () => {
        if (this.#store.dialect === 'postgres') {
          await sql`SELECT pg_advisory_xact_lock(hashtext('airlock.deliveries.claim'))`.execute(
            this.#store.db,
          );
        }
        // The status is a literal so that both databases' planners may walk the partial indexes
        // of migration 013 (pending ones in order, claimed ones by repository).
        const row = await this.#store.db
          .selectFrom('deliveries as d')
          .select([
            'd.delivery_id',
            'd.intent_json',
            'd.status',
            'd.attempts',
            'd.received_at',
            'd.trace_parent',
          ])
          .where('d.status', '=', sql.lit('pending'))
          .where((eb) => eb.or([eb('d.not_before', 'is', null), eb('d.not_before', '<=', now)]))
          .where((eb) => eb.or([eb('d.claimed_until', 'is', null), eb('d.claimed_until', '<=', now)]))
          .where((eb) =>
            eb.not(
              eb.exists(
                eb
                  .selectFrom('deliveries as busy')
                  .select('busy.delivery_id')
                  .whereRef('busy.repo_full_name', '=', 'd.repo_full_name')
                  .where('busy.claimed_until', '>', now)
                  .where('busy.status', '=', sql.lit('pending')),
              ),
            ),
          )
          .orderBy('d.received_at')
          .orderBy('d.delivery_id')
          .limit(1)
          .executeTakeFirst();
        if (!row) return undefined;
        await this.#store.db
          .updateTable('deliveries')
          .set({ claimed_by: claim.token, claimed_until: claim.until })
          .where('delivery_id', '=', row.delivery_id)
          .execute();
        return { ...rowToStored(row), claim };
      },
      { readCommitted: true },
    );
  }

  /** Runs `work` while keeping this process's claim on a delivery (renewing its lease). */
  whileClaimed<T>(
    delivery: ClaimedDelivery,
    work: () => Promise<T>,
    onError: (error: unknown) => void,
  ): Promise<T> {
    return whileClaimed(
      async () => {
        await this.#store.db
          .updateTable('deliveries')
          .set({ claimed_until: leaseEnd(this.#clock) })
          .where('delivery_id', '=', delivery.deliveryId)
          .where('claimed_by', '=', delivery.claim.token)
          .where('status', '=', 'pending')
          .execute();
      },
      work,
      onError,
    );
  }

  /**
   * Marks a claimed delivery processed with its outcome (and the task it created, if any). Throws
   * ClaimLost when another process has taken the delivery since, so the transaction this runs in
   * (the decision's writes) rolls back and the delivery is taken in once.
   */
  async finish(
    delivery: ClaimedDelivery,
    status: Exclude<DeliveryStatus, 'pending'>,
    outcome: string,
    taskId?: string,
  ): Promise<void> {
    if (!(await this.#finish(delivery, status, outcome, taskId))) {
      throw new ClaimLost(`delivery ${delivery.deliveryId} was claimed by another process meanwhile`);
    }
  }

  /**
   * Counts a failed attempt: the delivery waits for its next attempt under the queues' one retry
   * policy, or is finished as failed once that policy gives up. Returns the decision, or
   * undefined when another process has taken the delivery since (its attempt counts instead).
   */
  async retryLater(delivery: ClaimedDelivery, error: unknown): Promise<RetryDecision | undefined> {
    const decision = retryAfterFailure(this.#clock, delivery.attempts + 1, delivery.receivedAt, error);
    if ('giveUp' in decision) {
      const failed = `${decision.giveUp}: ${errorMessage(error)}`;
      return (await this.#finish(delivery, 'failed', failed)) ? decision : undefined;
    }
    const result = await this.#claimed(delivery)
      .set((eb) => ({
        attempts: eb('attempts', '+', 1),
        outcome: errorMessage(error),
        not_before: decision.retryAt,
        claimed_by: null,
        claimed_until: null,
      }))
      .executeTakeFirst();
    return result.numUpdatedRows === 1n ? decision : undefined;
  }

  /**
   * Gives up every claim in the database. Only for SQLite at start: one process owns an SQLite
   * database, so a claim found there is a previous process's, which stopped with it.
   */
  releaseClaims(): Promise<number> {
    return releaseClaims(this.#store, 'deliveries');
  }

  /** Whether any delivery is still pending (due now or waiting out a back-off). */
  async hasPending(): Promise<boolean> {
    const row = await this.#store.db
      .selectFrom('deliveries')
      .select('delivery_id')
      .where('status', '=', sql.lit('pending'))
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** The stored outcome of one delivery, for tests and the API. */
  async get(
    deliveryId: string,
  ): Promise<{ status: DeliveryStatus; outcome: string | null; taskId: string | null } | undefined> {
    const row = await this.#store.db
      .selectFrom('deliveries')
      .select(['status', 'outcome', 'task_id'])
      .where('delivery_id', '=', deliveryId)
      .executeTakeFirst();
    return row ? { status: row.status, outcome: row.outcome, taskId: row.task_id } : undefined;
  }

  async #finish(
    delivery: ClaimedDelivery,
    status: Exclude<DeliveryStatus, 'pending'>,
    outcome: string,
    taskId?: string,
  ): Promise<boolean> {
    const result = await this.#claimed(delivery)
      .set((eb) => ({
        status,
        outcome,
        task_id: taskId ?? null,
        processed_at: this.#clock.now().toISOString(),
        attempts: eb('attempts', '+', 1),
        claimed_by: null,
        claimed_until: null,
      }))
      .executeTakeFirst();
    return result.numUpdatedRows === 1n;
  }

  /** An update of a delivery that applies only while this process's claim on it holds. */
  #claimed(delivery: ClaimedDelivery) {
    return this.#store.db
      .updateTable('deliveries')
      .where('delivery_id', '=', delivery.deliveryId)
      .where('status', '=', 'pending')
      .where('claimed_by', '=', delivery.claim.token);
  }
}

function rowToStored(row: {
  delivery_id: string;
  intent_json: string;
  status: string;
  attempts: number;
  received_at: string;
  trace_parent: string | null;
}): StoredDelivery {
  return StoredDelivery.parse({
    deliveryId: row.delivery_id,
    intent: JSON.parse(row.intent_json),
    status: row.status,
    attempts: row.attempts,
    receivedAt: row.received_at,
    traceParent: row.trace_parent,
  });
}
