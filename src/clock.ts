/** Time as the domain sees it; tests pass a fixed or stepping clock. */
export interface Clock {
  now(): Date;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => new Date() };

/** The instant `days` days before the clock's now, as an ISO string (the form rows store). */
export function daysBefore(clock: Clock, days: number): string {
  return new Date(clock.now().getTime() - days * 86_400_000).toISOString();
}
