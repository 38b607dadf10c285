/** Time as the domain sees it; tests pass a clock they move by hand. */
export interface Clock {
  now(): Date;
  /**
   * Calls `fn` once `ms` have passed on this clock; returns a function that cancels it. Timers
   * that decide outcomes (a task's wall-clock limit) run on the clock, so a test can drive them.
   */
  after(ms: number, fn: () => void): () => void;
}

/** The wall clock. Its timers do not keep the process alive on their own. */
export const systemClock: Clock = {
  now: () => new Date(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** The instant `days` days before the clock's now, as an ISO string (the form rows store). */
export function daysBefore(clock: Clock, days: number): string {
  return new Date(clock.now().getTime() - days * 86_400_000).toISOString();
}
