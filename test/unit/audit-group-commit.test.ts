import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { type AuditEvent, AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';

let dir: string;
let db: Db;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-group-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const stored = () => (db.prepare('SELECT count(*) AS n FROM audit_events').get() as { n: number }).n;

it('commits a turn’s events together at the end of the turn, then tells listeners', async () => {
  const audit = new AuditLog(db, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
  const heard: AuditEvent[] = [];
  audit.subscribe((e) => heard.push(e));
  for (let i = 0; i < 10; i++) audit.append(`t${i % 2}`, 'vm.exec', { argv: ['true', String(i)] });
  expect(stored()).toBe(0);
  expect(heard).toEqual([]);
  expect(audit.headHash('t0')).toMatch(/^[0-9a-f]{64}$/);
  await nextTurn();
  expect(stored()).toBe(10);
  expect(heard.map((e) => [e.taskId, e.seq])).toEqual(
    Array.from({ length: 10 }, (_, i) => [`t${i % 2}`, Math.floor(i / 2) + 1]),
  );
  expect(verifyAuditChains(db)).toMatchObject({ ok: true, events: 10 });
});

it('commits early when maxEvents are waiting, and when a reader asks', () => {
  const audit = new AuditLog(db, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 4 } });
  for (let i = 0; i < 6; i++) audit.append('t', 'step', { i });
  expect(stored()).toBe(4);
  expect(audit.events('t').map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(stored()).toBe(6);
});

it('writes inside a caller’s transaction, so it commits or rolls back with it', () => {
  const audit = new AuditLog(db, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
  db.transaction(() => audit.append('t', 'ci.verdict', { verdict: 'passed' }))();
  expect(stored()).toBe(1);
});

it('links again when another process appended to the same chain meanwhile', async () => {
  const server = new AuditLog(db, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
  server.append('t', 'task.created', {});
  await nextTurn();
  const cli = new AuditLog(db, systemClock, new SecretRedactor());
  cli.append('t', 'audit.purged', { purged: [] });
  server.append('t', 'ci.verdict', { verdict: 'passed' });
  server.append('t', 'ci.verdict', { verdict: 'failed' });
  await nextTurn();
  expect(server.events('t').map((e) => [e.seq, e.type])).toEqual([
    [1, 'task.created'],
    [2, 'audit.purged'],
    [3, 'ci.verdict'],
    [4, 'ci.verdict'],
  ]);
  expect(verifyAuditChains(db, 't').ok).toBe(true);
});

it('a failed grouped commit is reported and thrown at the next append', async () => {
  const errors: unknown[] = [];
  const audit = new AuditLog(db, systemClock, new SecretRedactor(), {
    groupCommit: { maxEvents: 100 },
    onError: (e) => errors.push(e),
  });
  audit.append('t', 'step', {});
  db.exec(
    `CREATE TRIGGER refuse BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk is full'); END`,
  );
  await nextTurn();
  expect(String(errors[0])).toContain('disk is full');
  expect(() => audit.append('t', 'step', {})).toThrow(/an earlier audit write failed/);
  db.exec('DROP TRIGGER refuse');
  audit.append('t', 'step', { after: true });
  expect(audit.events('t').map((e) => e.seq)).toEqual([1]);
  expect(verifyAuditChains(db).ok).toBe(true);
});

it('never commits waiting events inside a caller’s transaction, so its rollback loses none of them', async () => {
  const audit = new AuditLog(db, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
  audit.append('t', 'step.1', {});
  audit.append('t', 'step.2', {});
  expect(() =>
    db.transaction(() => {
      audit.append('t', 'step.rolled-back', {});
      audit.appendMany([{ taskId: 'u', type: 'step.rolled-back', data: {} }]);
      throw new Error('the caller gives up');
    })(),
  ).toThrow('the caller gives up');
  audit.append('t', 'step.3', {});
  db.transaction(() => audit.append('t', 'step.4', {}))();
  await nextTurn();
  expect(audit.events('t').map((e) => `${e.seq} ${e.type}`)).toEqual([
    '1 step.1',
    '2 step.2',
    '3 step.3',
    '4 step.4',
  ]);
  expect(audit.events('u')).toEqual([]);
  expect(verifyAuditChains(db)).toMatchObject({ ok: true, events: 4 });
});
