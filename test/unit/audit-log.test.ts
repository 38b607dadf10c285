import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';

let dir: string;
let db: Db;
let redactor: SecretRedactor;
let audit: AuditLog;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-audit-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
  redactor = new SecretRedactor();
  audit = new AuditLog(db, systemClock, redactor);
  for (let i = 1; i <= 5; i++) audit.append('task-a', `step.${i}`, { n: i, note: `event ${i}` });
  audit.append('task-b', 'task.created', { actor: 'alice' });
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

/** Tampering needs a connection that drops the append-only triggers, as an attacker with the file would. */
function tamper(sql: string, ...args: unknown[]): void {
  db.exec(
    'DROP TRIGGER IF EXISTS audit_events_append_only_update; DROP TRIGGER IF EXISTS audit_events_append_only_delete;',
  );
  db.prepare(sql).run(...args);
}

describe('AuditLog', () => {
  it('keeps the chain whole when a caller rolls back a transaction its events were written in', () => {
    expect(() =>
      db.transaction(() => {
        audit.append('task-a', 'step.rolled-back', { n: 6 });
        audit.appendMany([{ taskId: 'task-a', type: 'step.rolled-back', data: { n: 7 } }]);
        throw new Error('the caller gives up');
      })(),
    ).toThrow('the caller gives up');
    audit.append('task-a', 'step.6', { n: 6 });
    audit.appendMany([{ taskId: 'task-a', type: 'step.7', data: { n: 7 } }]);
    expect(
      audit
        .events('task-a')
        .map((e) => `${e.seq} ${e.type}`)
        .slice(-3),
    ).toEqual(['5 step.5', '6 step.6', '7 step.7']);
    expect(verifyAuditChains(db, 'task-a').ok).toBe(true);
  });

  it('keeps the chain whole when a burst fails part-way', () => {
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
    expect(audit.events('task-a').map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(verifyAuditChains(db, 'task-a').ok).toBe(true);
  });

  it('chains events per task and verifies', () => {
    const events = audit.events('task-a');
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events[1]!.prevHash).toBe(events[0]!.hash);
    expect(audit.headHash('task-a')).toBe(events[4]!.hash);
    expect(verifyAuditChains(db)).toMatchObject({ ok: true, tasks: 2, events: 6 });
  });

  it('refuses UPDATE and DELETE', () => {
    expect(() => db.prepare(`UPDATE audit_events SET type = 'x' WHERE task_id = 'task-a'`).run()).toThrow(
      /append-only/,
    );
    expect(() => db.prepare(`DELETE FROM audit_events WHERE task_id = 'task-a'`).run()).toThrow(
      /append-only/,
    );
  });

  it('detects a changed field, and says where', () => {
    tamper(
      `UPDATE audit_events SET data_json = '{"n":3,"note":"forged"}' WHERE task_id = 'task-a' AND seq = 3`,
    );
    expect(verifyAuditChains(db, 'task-a').problems).toEqual([
      { taskId: 'task-a', seq: 3, problem: 'event 3 (step.3) was changed after it was written' },
    ]);
    expect(verifyAuditChains(db, 'task-b').ok).toBe(true);
  });

  it('detects a recomputed hash that no longer links', () => {
    tamper(`UPDATE audit_events SET hash = ? WHERE task_id = 'task-a' AND seq = 2`, 'f'.repeat(64));
    const [problem] = verifyAuditChains(db).problems;
    expect(problem).toMatchObject({ taskId: 'task-a', seq: 2 });
  });

  it('detects a deletion', () => {
    tamper(`DELETE FROM audit_events WHERE task_id = 'task-a' AND seq = 2`);
    expect(verifyAuditChains(db).problems).toEqual([
      { taskId: 'task-a', seq: 3, problem: 'events 2–2 are missing' },
    ]);
  });

  it('detects two events swapped', () => {
    tamper(`UPDATE audit_events SET seq = 100 WHERE task_id = 'task-a' AND seq = 2`);
    tamper(`UPDATE audit_events SET seq = 2 WHERE task_id = 'task-a' AND seq = 4`);
    tamper(`UPDATE audit_events SET seq = 4 WHERE task_id = 'task-a' AND seq = 100`);
    expect(verifyAuditChains(db).problems[0]).toMatchObject({ taskId: 'task-a', seq: 2 });
  });

  it('verifies up to the last written event after a crash mid-task', () => {
    // A crash leaves a prefix of the chain; a new process continues it from the stored head.
    const again = new AuditLog(db, systemClock, redactor);
    again.append('task-a', 'task.recovered', { from: 'running' });
    expect(again.events('task-a').at(-1)).toMatchObject({ seq: 6 });
    expect(verifyAuditChains(db).ok).toBe(true);
  });

  it('stores no secret, registered or shaped like one', () => {
    redactor.add('v2.installation-token-opaque-value');
    const planted = {
      output: 'token is v2.installation-token-opaque-value and ghs_0123456789abcdefghijABCDEFGHIJ0123',
      argv: ['curl', '-H', 'Authorization: Bearer sk-ant-api03-secretsecretsecretsecret', 'https://x'],
      key: '-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----',
    };
    audit.append('task-c', 'agent.event', planted);
    audit.append('task-c', 'vm.exec', { argv: planted.argv });
    db.pragma('wal_checkpoint(TRUNCATE)');
    const bytes = readFileSync(path.join(dir, 'airlock.sqlite')).toString('latin1');
    for (const secret of ['installation-token-opaque', 'ghs_0123456789', 'sk-ant-api03', 'MIIEsecret']) {
      expect(bytes).not.toContain(secret);
    }
    expect(JSON.stringify(audit.events('task-c'))).toContain('[REDACTED]');
    expect(verifyAuditChains(db).ok).toBe(true);
  });
});
