import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store, type StoreLocation } from '../../src/store/database.ts';
import { createTestDatabase, DIALECTS } from '../helpers/test-store.ts';

/** Runs test/helpers/audit-writer-thread.ts: a writer with its own connection and event loop. */
function writer(where: StoreLocation, name: string, rounds: number, perRound: number) {
  const thread = new Worker(new URL('../helpers/audit-writer-thread.ts', import.meta.url), {
    workerData: { where, name, rounds, perRound },
  });
  return new Promise<{ marks: string[]; errors: string[] }>((resolve, reject) => {
    thread.once('message', resolve);
    thread.once('error', reject);
    thread.once('exit', (code) => reject(new Error(`writer ${name} exited (${code}) without a report`)));
  });
}

// One task's chain written by two processes at once (on PostgreSQL a worker's VM and proxy events
// and the control plane's GitHub events; on SQLite the server and the CLI's purge), each with its
// own connection, event loop and AuditLog.
describe.each(DIALECTS)('two writers of one chain on %s', (dialect) => {
  let store: Store | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps every event exactly once, in one chain that verifies', async () => {
    let where: StoreLocation;
    if (dialect === 'postgres') where = { url: await createTestDatabase() };
    else {
      dir = await mkdtemp(path.join(tmpdir(), 'airlock-writers-'));
      where = { file: path.join(dir, 'airlock.sqlite') };
    }
    // Migrated before the writers start.
    store = await openStore(where);
    const reports = await Promise.all(['worker', 'control-plane'].map((name) => writer(where, name, 30, 12)));
    expect(reports.flatMap((r) => r.errors)).toEqual([]);
    const expected = reports.flatMap((r) => r.marks);
    const events = await new AuditLog(store, systemClock, new SecretRedactor()).events('t');
    const marks = events.map((e) => String((e.data.argv as string[] | undefined)?.[0] ?? e.data.text));
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
    expect(marks.length).toBe(expected.length);
    expect(new Set(marks)).toEqual(new Set(expected));
    // Each writer's events keep the order it appended them in.
    for (const report of reports) {
      const own = new Set(report.marks);
      expect(marks.filter((m) => own.has(m))).toEqual(report.marks);
    }
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, tasks: 3, problems: [] });
  });
});
