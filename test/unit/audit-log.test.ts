import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { tamper } from '../helpers/audit-tamper.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('AuditLog on %s', (dialect) => {
  let dir: string;
  let store: Store;
  let redactor: SecretRedactor;
  let audit: AuditLog;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-audit-'));
    // On SQLite a file, as in production: the secrets test reads its bytes.
    store =
      dialect === 'sqlite'
        ? await openStore({ file: path.join(dir, 'airlock.sqlite') })
        : await openTestStore(dialect);
    redactor = new SecretRedactor();
    audit = new AuditLog(store, systemClock, redactor);
    for (let i = 1; i <= 5; i++) audit.append('task-a', `step.${i}`, { n: i, note: `event ${i}` });
    audit.append('task-b', 'task.created', { actor: 'alice' });
    await audit.flush();
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the chain whole when a caller rolls back a transaction its events were written in', async () => {
    await expect(
      store.transaction(async () => {
        audit.append('task-a', 'step.rolled-back', { n: 6 });
        audit.appendMany([{ taskId: 'task-a', type: 'step.rolled-back', data: { n: 7 } }]);
        throw new Error('the caller gives up');
      }),
    ).rejects.toThrow('the caller gives up');
    // Rolled back after the events were written, just before the commit.
    await expect(
      store.transaction(async () => {
        audit.append('task-a', 'step.rolled-back', { n: 6 });
        store.beforeCommit(async () => {
          throw new Error('a later write fails');
        });
      }),
    ).rejects.toThrow('a later write fails');
    audit.append('task-a', 'step.6', { n: 6 });
    audit.appendMany([{ taskId: 'task-a', type: 'step.7', data: { n: 7 } }]);
    expect((await audit.events('task-a')).map((e) => `${e.seq} ${e.type}`).slice(-3)).toEqual([
      '5 step.5',
      '6 step.6',
      '7 step.7',
    ]);
    expect((await verifyAuditChains(store, 'task-a')).ok).toBe(true);
  });

  it('keeps the chain whole when a burst fails part-way', async () => {
    const bad = {
      toJSON: () => {
        throw new Error('unserializable');
      },
    };
    expect(() =>
      audit.appendMany([
        { taskId: 'task-a', type: 'step.6', data: { n: 6 } },
        { taskId: 'task-a', type: 'step.broken', data: { bad } },
      ]),
    ).toThrow('unserializable');
    audit.append('task-a', 'step.6', { n: 6 });
    expect((await audit.events('task-a')).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await verifyAuditChains(store, 'task-a')).ok).toBe(true);
  });

  it('chains events per task and verifies', async () => {
    const events = await audit.events('task-a');
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events[1]!.prevHash).toBe(events[0]!.hash);
    expect(await audit.headHash('task-a')).toBe(events[4]!.hash);
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, tasks: 2, events: 6 });
  });

  it('refuses UPDATE and DELETE', async () => {
    await expect(
      sql`UPDATE audit_events SET type = 'x' WHERE task_id = 'task-a'`.execute(store.db),
    ).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM audit_events WHERE task_id = 'task-a'`.execute(store.db)).rejects.toThrow(
      /append-only/,
    );
  });

  it('detects a changed field, and says where', async () => {
    await tamper(
      store,
      `UPDATE audit_events SET data_json = '{"n":3,"note":"forged"}' WHERE task_id = 'task-a' AND seq = 3`,
    );
    expect((await verifyAuditChains(store, 'task-a')).problems).toEqual([
      { taskId: 'task-a', seq: 3, problem: 'event 3 (step.3) was changed after it was written' },
    ]);
    expect((await verifyAuditChains(store, 'task-b')).ok).toBe(true);
  });

  it('detects a recomputed hash that no longer links', async () => {
    await tamper(
      store,
      `UPDATE audit_events SET hash = '${'f'.repeat(64)}' WHERE task_id = 'task-a' AND seq = 2`,
    );
    const [problem] = (await verifyAuditChains(store)).problems;
    expect(problem).toMatchObject({ taskId: 'task-a', seq: 2 });
  });

  it('detects a deletion', async () => {
    await tamper(store, `DELETE FROM audit_events WHERE task_id = 'task-a' AND seq = 2`);
    expect((await verifyAuditChains(store)).problems).toEqual([
      { taskId: 'task-a', seq: 3, problem: 'events 2–2 are missing' },
    ]);
  });

  it('detects two events swapped', async () => {
    await tamper(store, `UPDATE audit_events SET seq = 100 WHERE task_id = 'task-a' AND seq = 2`);
    await tamper(store, `UPDATE audit_events SET seq = 2 WHERE task_id = 'task-a' AND seq = 4`);
    await tamper(store, `UPDATE audit_events SET seq = 4 WHERE task_id = 'task-a' AND seq = 100`);
    expect((await verifyAuditChains(store)).problems[0]).toMatchObject({ taskId: 'task-a', seq: 2 });
  });

  it('verifies up to the last written event after a crash mid-task', async () => {
    // A crash leaves a prefix of the chain; a new process continues it from the stored head.
    const again = new AuditLog(store, systemClock, redactor);
    again.append('task-a', 'task.recovered', { from: 'running' });
    expect((await again.events('task-a')).at(-1)).toMatchObject({ seq: 6 });
    expect((await verifyAuditChains(store)).ok).toBe(true);
  });

  it('stores no secret, registered or shaped like one', async () => {
    redactor.add('v2.installation-token-opaque-value');
    const planted = {
      output: 'token is v2.installation-token-opaque-value and ghs_0123456789abcdefghijABCDEFGHIJ0123',
      argv: ['curl', '-H', 'Authorization: Bearer sk-ant-api03-secretsecretsecretsecret', 'https://x'],
      key: '-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----',
    };
    audit.append('task-c', 'agent.event', planted);
    audit.append('task-c', 'vm.exec', { argv: planted.argv });
    await audit.flush();
    let stored: string;
    if (dialect === 'sqlite') {
      store.sqlite!.pragma('wal_checkpoint(TRUNCATE)');
      stored = readFileSync(path.join(dir, 'airlock.sqlite')).toString('latin1');
    } else {
      // Every stored column of both audit tables, as text.
      const rows = await sql<{ row: string }>`SELECT e::text AS row FROM audit_events e
        UNION ALL SELECT p::text FROM audit_payloads p`.execute(store.db);
      stored = rows.rows.map((r) => r.row).join('\n');
      expect(stored).toContain('task-c');
    }
    for (const secret of ['installation-token-opaque', 'ghs_0123456789', 'sk-ant-api03', 'MIIEsecret']) {
      expect(stored).not.toContain(secret);
    }
    expect(JSON.stringify(await audit.events('task-c'))).toContain('[REDACTED]');
    expect((await verifyAuditChains(store)).ok).toBe(true);
  });
});
