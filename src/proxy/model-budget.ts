import type { TokenUsage } from './usage-meter.ts';

/** What one task's model budget needs. */
export interface ModelBudgetOptions {
  /** Input plus output tokens the task may use. */
  budgetTokens: number;
  /** Model requests the task may have in flight at once; more wait for a slot. */
  maxInFlight: number;
  /** Called once, when the usage counted goes over the budget. */
  onExceeded(total: TokenUsage): void;
}

/** A task's model budget: usage counted so far, reservations for requests in flight, and slots. */
export interface ModelBudget {
  usage(): TokenUsage;
  /** Whether the usage counted went over the budget. */
  exceeded(): boolean;
  /** Adds usage reported (or estimated) for a response. */
  add(delta: TokenUsage): void;
  /** Waits for one of the task's in-flight slots; the function returned gives it back. */
  slot(): Promise<() => void>;
  /**
   * Reserves `estimate` tokens before a request is sent, waiting while other requests' reservations
   * leave too little. Resolves to the release function, or undefined when nothing is left.
   */
  reserve(estimate: number): Promise<(() => void) | undefined>;
}

/**
 * Creates the budget of one task. The budget is checked before a request is sent, against what
 * was used plus what the requests in flight may still use, so parallel requests cannot all pass on
 * a budget that has room for one. A request alone in flight is let through while anything is left,
 * however large its estimate: its usage is counted as it streams and the task stops when over.
 */
export function createModelBudget(options: ModelBudgetOptions): ModelBudget {
  const total: TokenUsage = { inputTokens: 0, outputTokens: 0 };
  let over = false;
  let reserved = 0;
  let reservations = 0;
  let inFlight = 0;
  const slotWaiters: Array<() => void> = [];
  let reservationWaiters: Array<() => void> = [];
  const used = () => total.inputTokens + total.outputTokens;

  return {
    usage: () => ({ ...total }),
    exceeded: () => over,
    add(delta) {
      total.inputTokens += delta.inputTokens;
      total.outputTokens += delta.outputTokens;
      if (!over && used() > options.budgetTokens) {
        over = true;
        options.onExceeded({ ...total });
      }
    },
    async slot() {
      if (inFlight >= options.maxInFlight) await new Promise<void>((resolve) => slotWaiters.push(resolve));
      else inFlight += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        // A waiter takes the slot over, so the count stays as it is.
        const next = slotWaiters.shift();
        if (next) next();
        else inFlight -= 1;
      };
    },
    async reserve(estimate) {
      for (;;) {
        if (over || used() >= options.budgetTokens) return undefined;
        if (reservations === 0 || used() + reserved + estimate <= options.budgetTokens) break;
        await new Promise<void>((resolve) => reservationWaiters.push(resolve));
      }
      reserved += estimate;
      reservations += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        reserved -= estimate;
        reservations -= 1;
        const waiters = reservationWaiters;
        reservationWaiters = [];
        for (const wake of waiters) wake();
      };
    },
  };
}
