import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { startCheckpointer } from '../../src/store/checkpointer.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { openTestStore } from '../helpers/test-store.ts';
import { waitFor } from '../helpers/wait-for.ts';

// SQLite only, by nature: the checkpointer moves SQLite's write-ahead log into its file.
let dir: string;
let store: Store;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-checkpointer-'));
  store = await openStore({ file: path.join(dir, 'airlock.sqlite') });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

it('copies the write-ahead log into the database from its own thread, and hands checkpoints back on stop', async () => {
  const db = store.sqlite!;
  const file = path.join(dir, 'airlock.sqlite');
  const before = (await stat(file)).size;
  const checkpointer = startCheckpointer(store, memoryLogger().log, { intervalMs: 50 });
  expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);

  const body = 'x'.repeat(64 * 1024);
  for (let i = 0; i < 64; i++) {
    await store.db
      .insertInto('webhook_inbox')
      .values({ delivery_id: `d-${i}`, event: 'ping', payload: body, received_at: new Date().toISOString() })
      .execute();
  }
  // 4 MiB went to the log; the main file only grows when a checkpoint copies it there.
  await waitFor(async () => (await stat(file)).size >= before + 4 * 1024 * 1024, 10_000, 'a checkpoint');

  await checkpointer.stop();
  expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(10000);
});

it('does nothing for an in-memory database', async () => {
  const memory = await openStore({ file: ':memory:' });
  const checkpointer = startCheckpointer(memory, memoryLogger().log);
  expect(memory.sqlite!.pragma('wal_autocheckpoint', { simple: true })).not.toBe(0);
  await checkpointer.stop();
  await memory.close();
});

it('does nothing on PostgreSQL, which has no write-ahead log of airlock’s to move', async () => {
  const postgres = await openTestStore('postgres');
  const checkpointer = startCheckpointer(postgres, memoryLogger().log);
  await checkpointer.stop();
  await postgres.close();
});
