/**
 * Gives webhook acknowledgements priority over background work in the same process. During a
 * burst of deliveries, intake and GitHub jobs wait for a gap between webhooks (`quietMs`), but
 * never longer than `maxWaitMs` at a time, so they always progress: a burst delays tasks by at
 * most that much per step while every delivery is acknowledged at once.
 */
export class IngressGate {
  readonly #quietMs: number;
  readonly #maxWaitMs: number;
  #lastArrival = Number.NEGATIVE_INFINITY;
  #inFlight = 0;

  constructor(options: { quietMs?: number; maxWaitMs?: number } = {}) {
    this.#quietMs = options.quietMs ?? 5;
    this.#maxWaitMs = options.maxWaitMs ?? 200;
  }

  /** Marks a webhook being handled; call the returned function when it is answered. */
  arrive(): () => void {
    this.#lastArrival = performance.now();
    this.#inFlight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight--;
      this.#lastArrival = performance.now();
    };
  }

  /** Resolves when no webhook is in flight or arrived in the last `quietMs`, or after `maxWaitMs`. */
  async yield(): Promise<void> {
    const deadline = performance.now() + this.#maxWaitMs;
    while (this.#busy() && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, this.#quietMs));
    }
  }

  #busy(): boolean {
    return this.#inFlight > 0 || performance.now() - this.#lastArrival < this.#quietMs;
  }
}
