import type { ExecAuditLoss } from './exec-audit.ts';

/** How many exec records per second a VM may add to its task's record, and how many at once. */
export interface ExecAuditRate {
  perSecond: number;
  burst: number;
}

/**
 * Every guest exec becomes an audit row written on the control plane's only thread; a guest in a
 * tight exec loop must not take that thread from other tasks. A build's bursts fit in the burst.
 */
export const DEFAULT_EXEC_AUDIT_RATE: ExecAuditRate = { perSecond: 200, burst: 2_000 };

/** Dropped records are summarised at most this often, so the summary cannot flood the record. */
const SUMMARY_INTERVAL_MS = 1_000;

type Dropped = Extract<ExecAuditLoss, { kind: 'dropped' }>;

/**
 * A token bucket over one VM's exec records: `admit()` says whether the next record is kept.
 * Records it refuses are counted and reported through `onDropped` as one summary per second
 * (and on `flush()`), never lost silently.
 */
export class ExecAuditLimiter {
  readonly #rate: ExecAuditRate;
  readonly #onDropped: (summary: Dropped) => void;
  readonly #now: () => number;
  #tokens: number;
  #refilledAt: number;
  #dropped = 0;
  #droppedFrom = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(rate: ExecAuditRate, onDropped: (summary: Dropped) => void, now: () => number = Date.now) {
    if (!(rate.perSecond > 0 && rate.burst >= 1))
      throw new RangeError('an exec-audit rate needs perSecond > 0 and burst ≥ 1');
    this.#rate = rate;
    this.#onDropped = onDropped;
    this.#now = now;
    this.#tokens = rate.burst;
    this.#refilledAt = now();
  }

  /** Whether the next record is kept; a refused one is counted for the next summary. */
  admit(): boolean {
    const now = this.#now();
    this.#tokens = Math.min(
      this.#rate.burst,
      this.#tokens + ((now - this.#refilledAt) / 1000) * this.#rate.perSecond,
    );
    this.#refilledAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    if (this.#dropped === 0) {
      this.#droppedFrom = now;
      this.#timer = setTimeout(() => this.flush(), SUMMARY_INTERVAL_MS);
      this.#timer.unref();
    }
    this.#dropped++;
    return false;
  }

  /** Reports the records dropped since the last summary, if any. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#dropped === 0) return;
    const summary: Dropped = {
      kind: 'dropped',
      records: this.#dropped,
      from: new Date(this.#droppedFrom).toISOString(),
      to: new Date(this.#now()).toISOString(),
      perSecond: this.#rate.perSecond,
      burst: this.#rate.burst,
    };
    this.#dropped = 0;
    this.#onDropped(summary);
  }
}
