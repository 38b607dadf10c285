import { afterEach, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/database.ts';

// Until every store is on the query layer, some still write through the raw SQLite connection
// (TaskStore, AuditLog, …). On SQLite the Store runs on that same connection, so a Store
// transaction must hold those writes too: they commit or roll back with it.
let store: Store | null = null;
afterEach(async () => {
  await store?.close();
  store = null;
});

it('commits and rolls back raw-connection writes made inside a Store transaction with it', async () => {
  store = await openStore({ file: ':memory:' });
  const s = store;
  const raw = s.sqlite!;
  const insertRaw = (kind: string) =>
    raw
      .prepare(
        `INSERT INTO github_jobs (kind, payload_json, status, not_before, created_at) VALUES (?, '{}', 'pending', 'a', 'b')`,
      )
      .run(kind);
  const job = (kind: string) => ({
    kind,
    payload_json: '{}',
    status: 'pending' as const,
    not_before: 'a',
    created_at: 'b',
  });
  await expect(
    s.transaction(async () => {
      await s.db.insertInto('github_jobs').values(job('store')).execute();
      insertRaw('raw');
      // A raw store's own transaction inside becomes a savepoint of this one.
      raw.transaction(() => insertRaw('raw-transaction'))();
      throw new Error('changed my mind');
    }),
  ).rejects.toThrow('changed my mind');
  expect(raw.prepare('SELECT kind FROM github_jobs').all()).toEqual([]);
  await s.transaction(async () => {
    insertRaw('raw');
    raw.transaction(() => insertRaw('raw-transaction'))();
    await s.db.insertInto('github_jobs').values(job('store')).execute();
  });
  expect(raw.prepare('SELECT kind FROM github_jobs ORDER BY id').all()).toEqual([
    { kind: 'raw' },
    { kind: 'raw-transaction' },
    { kind: 'store' },
  ]);
});
