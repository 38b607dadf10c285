import type { Airlock } from '../../src/airlock.ts';
import { waitFor } from './wait-for.ts';

/**
 * Waits until an airlock has nothing left to do right now: no delivery waiting in the inbox or due
 * for intake, no queued or running task, no GitHub job due. Every hand-off between those stages is
 * one transaction, so a moment at which all are empty is a settled one; it is seen on two polls.
 */
export async function settled(airlock: Airlock, timeoutMs = 60_000): Promise<void> {
  const plane = airlock.github;
  if (!plane) throw new Error('settled() needs an airlock with its GitHub plane');
  const idle = async () =>
    (await plane.inbox.waiting(1)).length === 0 &&
    (await plane.deliveries.pending(1)).length === 0 &&
    (await airlock.tasks.queued(1)).length === 0 &&
    plane.scheduler.runningIds().length === 0 &&
    (await plane.jobs.dueCount()) === 0;
  // Idle on two polls in a row: a loop step that was between its reads and its writes has ended.
  let idleBefore = false;
  await waitFor(
    async () => {
      const now = await idle();
      const settledNow = now && idleBefore;
      idleBefore = now;
      return settledNow;
    },
    timeoutMs,
    'airlock to settle',
  );
}
