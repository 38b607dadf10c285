import type { Clock } from '../../src/clock.ts';

/** A clock tests move by hand; its timers fire as `advance` passes them. */
export class ManualClock implements Clock {
  #ms: number;
  #timers: Array<{ at: number; fn: () => void }> = [];
  constructor(start = Date.now()) {
    this.#ms = start;
  }
  now(): Date {
    return new Date(this.#ms);
  }
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.#ms + ms, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }
  advance(ms: number): void {
    this.#ms += ms;
    const due = this.#timers.filter((t) => t.at <= this.#ms).sort((a, b) => a.at - b.at);
    this.#timers = this.#timers.filter((t) => t.at > this.#ms);
    for (const timer of due) timer.fn();
  }
}
