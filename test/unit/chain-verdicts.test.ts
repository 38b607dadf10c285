import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { ChainVerdicts } from '../../src/audit/chain-verdicts.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';

let dir: string;
let db: Db;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-verdicts-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

it('recomputes a chain only when its head moved (at most every few seconds) or the verdict is old', () => {
  const clock = new ManualClock();
  const audit = new AuditLog(db, clock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
  let verifications = 0;
  const counted = {
    head: (id: string) => audit.head(id),
    typeCounts: (id: string) => audit.typeCounts(id),
    events: audit.events.bind(audit),
    verify: (id?: string) => {
      verifications++;
      return audit.verify(id);
    },
  };
  const verdicts = new ChainVerdicts(counted, clock, { maxAgeMs: 60_000, growingMs: 5_000 });
  expect(verdicts.of('t')).toMatchObject({ state: 'empty', events: 0 });
  audit.append('t', 'task.created', {});
  audit.append('t', 'vm.exec', { argv: ['true'] });
  clock.advance(5_000);
  expect(verdicts.of('t')).toMatchObject({ state: 'verified', events: 2 });
  expect(verdicts.of('t')).toMatchObject({ state: 'verified', events: 2 });
  expect(verifications).toBe(2);
  // Changed behind airlock's back: the cached verdict stands until it is old, then the change shows.
  db.exec('DROP TRIGGER audit_events_append_only_update');
  db.prepare(
    `UPDATE audit_events SET data_json = '{"argv":["false"]}' WHERE task_id = 't' AND seq = 2`,
  ).run();
  expect(verdicts.of('t').state).toBe('verified');
  clock.advance(60_000);
  expect(verdicts.of('t')).toMatchObject({ state: 'broken', problem: { seq: 2 } });
  expect(verifications).toBe(3);
  // A new event moves the head: verified again once a few seconds have passed (and still broken).
  audit.append('t', 'vm.exec_audit_incomplete', { reason: 'no answer' });
  expect(verdicts.of('t')).toMatchObject({ events: 2 });
  expect(verifications).toBe(3);
  clock.advance(5_000);
  expect(verdicts.of('t')).toMatchObject({
    state: 'broken',
    events: 3,
    execAuditGaps: [{ seq: 3, type: 'vm.exec_audit_incomplete' }],
  });
  expect(verifications).toBe(4);
});
