import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** A background loop that runs `step` when woken or every `intervalMs`, never twice at once. */
export interface WorkLoop {
  wake(): void;
  /** Resolves once a step that started after this call has finished. */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a {@link WorkLoop}. `step` returns how much it did; a busy loop runs again at once. Its
 * signal aborts when the loop is stopped: a step that works through a batch ends after the item in
 * hand instead of finishing the batch.
 */
export function startWorkLoop(
  name: string,
  step: (signal: AbortSignal) => Promise<number>,
  log: Logger,
  intervalMs = 1000,
): WorkLoop {
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const stopping = new AbortController();
  const waiters: Array<() => void> = [];

  const run = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    const myWaiters = waiters.splice(0);
    running = (async () => {
      let did = 0;
      try {
        did = await step(stopping.signal);
      } catch (error) {
        log.error({ loop: name, err: errorMessage(error) }, 'work loop step failed');
      }
      running = undefined;
      for (const resolve of myWaiters) resolve();
      if (again || did > 0) {
        again = false;
        setImmediate(run);
      }
    })();
  };
  const timer = setInterval(run, intervalMs);
  timer.unref();
  setImmediate(run);
  return {
    wake: run,
    settled: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        run();
      }),
    stop: async () => {
      stopped = true;
      stopping.abort();
      clearInterval(timer);
      await running;
      for (const resolve of waiters.splice(0)) resolve();
    },
  };
}
