import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Store } from './database.ts';

/**
 * How long a claim on queued work (a delivery in intake, a GitHub job running) holds without
 * renewal. The claimant renews it every third of this while it works, so only a process that has
 * stopped (killed, host lost, stalled this long) loses its claim, and its work is taken up again
 * within this time.
 */
export const CLAIM_LEASE_MS = 60_000;

/** One process's claim on a row: the token written on it, and when the lease ends. */
export interface Claim {
  token: string;
  until: string;
}

/** A new claim whose lease starts now on `clock`. */
export function newClaim(clock: Clock): Claim {
  return { token: randomUUID(), until: leaseEnd(clock) };
}

/** The end of a lease taken or renewed now. */
export function leaseEnd(clock: Clock): string {
  return new Date(clock.now().getTime() + CLAIM_LEASE_MS).toISOString();
}

/**
 * Runs `work` while renewing a claim every third of its lease (`renew` writes a later end on the
 * claimed row). A renewal that fails goes to `onError` and is tried again a third of a lease later.
 */
export async function whileClaimed<T>(
  renew: () => Promise<void>,
  work: () => Promise<T>,
  onError: (error: unknown) => void,
): Promise<T> {
  const timer = setInterval(() => void renew().catch(onError), CLAIM_LEASE_MS / 3);
  timer.unref();
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** Clears every claim in `table`; returns how many there were (see the queues' releaseClaims). */
export async function releaseClaims(store: Store, table: 'deliveries' | 'github_jobs'): Promise<number> {
  const result = await store.db
    .updateTable(table)
    .set({ claimed_by: null, claimed_until: null })
    .where('claimed_by', 'is not', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
