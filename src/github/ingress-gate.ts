/** Monotonic milliseconds and a way to wait on them; tests pass one they move by hand. */
export interface GateTimer {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realTimer: GateTimer = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * Gives webhook acknowledgements priority over background work in the same process. During a
 * burst of deliveries, intake and GitHub jobs wait for a gap between webhooks (`quietMs`), but
 * never longer than `maxWaitMs` at a time, so they always progress: a burst delays tasks by at
 * most that much per step while every delivery is acknowledged at once.
 */
export class IngressGate {
  readonly #quietMs: number;
  readonly #maxWaitMs: number;
  readonly #timer: GateTimer;
  #lastArrival = Number.NEGATIVE_INFINITY;
  #inFlight = 0;

  constructor(options: { quietMs?: number; maxWaitMs?: number; timer?: GateTimer } = {}) {
    this.#quietMs = options.quietMs ?? 5;
    this.#maxWaitMs = options.maxWaitMs ?? 200;
    this.#timer = options.timer ?? realTimer;
  }

  /** Marks a webhook being handled; call the returned function when it is answered. */
  arrive(): () => void {
    this.#lastArrival = this.#timer.now();
    this.#inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight--;
      this.#lastArrival = this.#timer.now();
    };
  }

  /** Resolves when no webhook is in flight or arrived in the last `quietMs`, or after `maxWaitMs`. */
  async yield(): Promise<void> {
    const deadline = this.#timer.now() + this.#maxWaitMs;
    while (this.#busy() && this.#timer.now() < deadline) {
      await this.#timer.sleep(this.#quietMs);
    }
  }

  #busy(): boolean {
    return this.#inFlight > 0 || this.#timer.now() - this.#lastArrival < this.#quietMs;
  }
}
