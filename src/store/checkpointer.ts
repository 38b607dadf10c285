import { Worker } from 'node:worker_threads';
import type { Logger } from '../logger.ts';
import type { Store } from './database.ts';

/** A running background checkpointer. */
export interface Checkpointer {
  /** Checkpoints once more, stops the worker and gives checkpoints back to the connection. */
  stop(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the main thread. With SQLite's automatic checkpoints, the commit that
 * crosses the threshold copies the whole log into the database before it returns, which stalls
 * the event loop for tens of milliseconds (a webhook answer waits behind it). Instead, a worker
 * thread with its own connection runs a passive checkpoint every `intervalMs`, concurrently with
 * the writers, and the main connection's automatic checkpoints are turned off while it runs.
 * SQLite only, by nature (it works on the embedded connection and its file); on PostgreSQL, and
 * for an in-memory database, there is nothing to do.
 */
export function startCheckpointer(
  store: Store,
  log: Logger,
  options: { intervalMs?: number } = {},
): Checkpointer {
  const db = store.sqlite;
  if (!db || db.memory) return { stop: async () => {} };
  const previous = db.pragma('wal_autocheckpoint', { simple: true }) as number;
  const worker = new Worker(new URL('./checkpoint-worker.ts', import.meta.url), {
    workerData: { file: db.name, intervalMs: options.intervalMs ?? 1000 },
  });
  worker.unref();
  db.pragma('wal_autocheckpoint = 0');
  let failed = false;
  let ready = false;
  const restore = () => {
    if (db.open) db.pragma(`wal_autocheckpoint = ${previous}`);
  };
  worker.on('message', (message: { error?: string; ready?: boolean }) => {
    if (message.ready) ready = true;
    if (message.error) log.warn({ err: message.error }, 'background checkpoint failed');
  });
  worker.once('error', (error) => {
    failed = true;
    restore();
    log.error({ err: error.message }, 'background checkpointer stopped; SQLite checkpoints on commit again');
  });
  return {
    stop: async () => {
      if (failed) return;
      if (!ready) {
        // Still starting (a short-lived airlock): it has checkpointed nothing, so the last
        // checkpoint is made here instead of waiting for the thread to start only to stop it.
        await worker.terminate();
        restore();
        if (db.open) db.pragma('wal_checkpoint(PASSIVE)');
        return;
      }
      const stopped = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      // Held while it stops: a process with nothing else to do would otherwise exit before the
      // last checkpoint, with whatever awaited stop() never resumed.
      worker.ref();
      worker.postMessage('stop');
      await stopped;
      restore();
    },
  };
}
