import { type Clock, systemClock } from '../clock.ts';
import { errorMessage, SandboxError } from '../errors.ts';

/** One VM's place under the host's VM limit, held from before its QEMU starts until it is gone. */
export interface VmPlace {
  /** How long the launch waited for this place, in ms; undefined when one was free at once. */
  readonly queuedMs: number | undefined;
  /** Gives the place back (to the first launch waiting, if any). Safe to call twice. */
  release(): void;
}

interface Waiter {
  queuedAt: number;
  grant(place: VmPlace): void;
}

/**
 * The host's VM limit (AIRLOCK_MAX_CONCURRENT_TASKS) as places: every VM the sandbox runs holds
 * one (a task's, an environment build's, one booted for a base snapshot, a warm one), so no launch
 * ever boots past the limit. A launch that finds none free waits in arrival order until one is
 * released; the warm pool only takes a place nobody is waiting for.
 */
export class VmPlaces {
  readonly limit: number;
  readonly #clock: Pick<Clock, 'now'>;
  readonly #waiters: Waiter[] = [];
  #held = 0;

  constructor(limit: number, clock: Pick<Clock, 'now'> = systemClock) {
    if (!(limit === Number.POSITIVE_INFINITY || (Number.isInteger(limit) && limit > 0)))
      throw new SandboxError(
        'invalid_vm_limit',
        `the VM limit must be a whole number of VMs above 0, not ${limit}`,
        {
          hint: 'check AIRLOCK_MAX_CONCURRENT_TASKS',
        },
      );
    this.limit = limit;
    this.#clock = clock;
  }

  /** Places held now. */
  get held(): number {
    return this.#held;
  }

  /** Launches waiting for a place now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** A place at once if one is free and no launch waits for one; otherwise none (the warm pool's way). */
  tryTake(): VmPlace | undefined {
    if (this.#waiters.length > 0 || this.#held >= this.limit) return undefined;
    this.#held++;
    return this.#place(undefined);
  }

  /**
   * A place: at once if one is free and no launch waits ahead, else once one is released, in
   * arrival order. `onQueued` is called (synchronously) when the launch has to wait. Rejects with a
   * SandboxError if `signal` aborts first; the launch then leaves the queue.
   */
  take(options: { signal?: AbortSignal | undefined; onQueued?: () => void; what: string }): Promise<VmPlace> {
    const { signal, what } = options;
    const aborted = () =>
      new SandboxError(
        'vm_wait_aborted',
        `${what} was not started: stopped (${errorMessage(signal?.reason)}) while it waited for one of the host's ${this.limit} VM places`,
        { cause: signal?.reason },
      );
    if (signal?.aborted) return Promise.reject(aborted());
    const place = this.tryTake();
    if (place) return Promise.resolve(place);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        queuedAt: this.#clock.now().getTime(),
        grant: (granted) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(granted);
        },
      };
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(aborted());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      options.onQueued?.();
    });
  }

  #place(queuedAt: number | undefined): VmPlace {
    let held = true;
    return {
      queuedMs: queuedAt === undefined ? undefined : this.#clock.now().getTime() - queuedAt,
      release: () => {
        if (!held) return;
        held = false;
        this.#handOn();
      },
    };
  }

  /** A released place goes straight to the first launch waiting, so a later arrival cannot take it. */
  #handOn(): void {
    const next = this.#waiters.shift();
    if (next) next.grant(this.#place(next.queuedAt));
    else this.#held--;
  }
}
