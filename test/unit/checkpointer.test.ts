import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { startCheckpointer } from '../../src/store/checkpointer.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { waitFor } from '../helpers/wait-for.ts';

let dir: string;
let db: Db;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-checkpointer-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

it('copies the write-ahead log into the database from its own thread, and hands checkpoints back on stop', async () => {
  const file = path.join(dir, 'airlock.sqlite');
  const before = (await stat(file)).size;
  const checkpointer = startCheckpointer(db, memoryLogger().log, { intervalMs: 50 });
  expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);

  const insert = db.prepare(
    'INSERT INTO webhook_inbox (delivery_id, event, payload, received_at) VALUES (?, ?, ?, ?)',
  );
  const body = 'x'.repeat(64 * 1024);
  for (let i = 0; i < 64; i++) insert.run(`d-${i}`, 'ping', body, new Date().toISOString());
  // 4 MiB went to the log; the main file only grows when a checkpoint copies it there.
  await waitFor(async () => (await stat(file)).size >= before + 4 * 1024 * 1024, 10_000, 'a checkpoint');

  await checkpointer.stop();
  expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(10000);
});

it('does nothing for an in-memory database', async () => {
  const memory = openDatabase(':memory:');
  const checkpointer = startCheckpointer(memory, memoryLogger().log);
  expect(memory.pragma('wal_autocheckpoint', { simple: true })).not.toBe(0);
  await checkpointer.stop();
  memory.close();
});
