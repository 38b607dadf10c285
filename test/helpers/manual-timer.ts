import type { GateTimer } from '../../src/github/ingress-gate.ts';

/** A monotonic timer tests move by hand: sleeps end only when the test advances past them. */
export class ManualTimer implements GateTimer {
  #ms = 0;
  #sleeps: Array<{ until: number; wake: () => void }> = [];
  #onSleep: Array<() => void> = [];

  now(): number {
    return this.#ms;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((wake) => {
      this.#sleeps.push({ until: this.#ms + ms, wake });
      for (const notify of this.#onSleep.splice(0)) notify();
    });
  }

  /** Resolves once some code is sleeping on this timer. */
  sleeping(): Promise<void> {
    return this.#sleeps.length ? Promise.resolve() : new Promise((notify) => this.#onSleep.push(notify));
  }

  /** Moves time on by `ms`, waking every sleep that ends by then. */
  advance(ms: number): void {
    this.#ms += ms;
    const due = this.#sleeps.filter((s) => s.until <= this.#ms);
    this.#sleeps = this.#sleeps.filter((s) => s.until > this.#ms);
    for (const s of due) s.wake();
  }
}
