// Runs in a worker thread (see checkpointer.ts): copies the write-ahead log back into the database
// on its own connection, so the main thread never pays for a checkpoint inside a commit.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { file, intervalMs } = workerData as { file: string; intervalMs: number };
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');

const checkpoint = (): void => {
  try {
    // PASSIVE: copies what it can without waiting for, or blocking, the writers.
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort?.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
};
const timer = setInterval(checkpoint, intervalMs);
parentPort?.postMessage({ ready: true });
parentPort?.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort?.postMessage({ stopped: true });
  parentPort?.close();
});
