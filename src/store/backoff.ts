import type { Clock } from '../clock.ts';
import { isPermanentFailure } from '../errors.ts';

/** The first retry waits this long; each later one twice as long as the one before. */
const FIRST_DELAY_MS = 1_000;
/** No retry waits longer than this, so work resumes within minutes of an outage ending. */
const MAX_DELAY_MS = 5 * 60_000;
/**
 * Work is given up only once it has failed for this long: a GitHub outage of hours loses nothing,
 * and what fails for a day is a bug or a revoked installation, which a person must look at.
 */
export const GIVE_UP_AFTER_MS = 24 * 3600_000;

/** What to do with work whose attempt just failed. */
export type RetryDecision = { retryAt: string } | { giveUp: string };

/**
 * The one retry policy of airlock's durable queues (deliveries waiting for intake, GitHub jobs):
 * exponential back-off from {@link FIRST_DELAY_MS} to {@link MAX_DELAY_MS}, stored as the row's
 * `not_before`, until the work has been failing for {@link GIVE_UP_AFTER_MS}, or at once when
 * GitHub refused the request itself (see isPermanentFailure).
 */
export function retryAfterFailure(
  clock: Clock,
  attempts: number,
  firstQueuedAt: string,
  error?: unknown,
): RetryDecision {
  if (isPermanentFailure(error)) return { giveUp: 'GitHub refused the request; retrying cannot help' };
  const now = clock.now().getTime();
  const failingForMs = now - Date.parse(firstQueuedAt);
  if (failingForMs >= GIVE_UP_AFTER_MS) {
    return { giveUp: `gave up after ${attempts} attempts over ${Math.round(failingForMs / 3600_000)} h` };
  }
  const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.max(0, attempts - 1));
  return { retryAt: new Date(now + delay).toISOString() };
}
