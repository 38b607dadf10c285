import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';

let dir: string;
let db: Db;
let audit: AuditLog;
const stored = () => (db.prepare('SELECT count(*) AS n FROM audit_events').get() as { n: number }).n;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-reads-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
  // As the control plane runs it: events wait for a group commit at the end of the turn.
  audit = new AuditLog(db, new ManualClock(), new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
  audit.append('t', 'task.created', { actor: { login: 'alice' } });
  audit.append('t', 'task.prompt', { text: 'make it better' });
  for (let i = 0; i < 6; i++) audit.append('t', 'vm.exec', { argv: ['step', String(i)] });
  audit.append('t', 'proxy.egress', { host: 'evil.example', decision: 'refused' });
  audit.append('t', 'proxy.refused', { method: 'GET', path: '/nope' });
  audit.append('t', 'git.diff', { stat: 'one' });
  audit.append('t', 'git.diff', { stat: 'two' });
  audit.append('u', 'task.created', { actor: { login: 'bob' } });
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

describe('AuditLog reads see every accepted event without the caller flushing', () => {
  it('events: all, a page forwards, a page backwards, filtered by type or to refusals', () => {
    expect(stored()).toBe(0);
    expect(audit.events('t').map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(audit.events('t', { afterSeq: 3, limit: 2 }).map((e) => e.seq)).toEqual([4, 5]);
    expect(audit.events('t', { beforeSeq: 5, limit: 2 }).map((e) => e.seq)).toEqual([3, 4]);
    expect(audit.events('t', { beforeSeq: 3, limit: 10 }).map((e) => e.seq)).toEqual([1, 2]);
    expect(audit.events('t', {}, { types: ['git.diff', 'task.prompt'] }).map((e) => e.seq)).toEqual([
      2, 11, 12,
    ]);
    expect(audit.events('t', {}, { excludeTypes: ['vm.exec'] })).toHaveLength(6);
    expect(audit.events('t', {}, { refusals: true }).map((e) => e.type)).toEqual([
      'proxy.egress',
      'proxy.refused',
    ]);
    expect(audit.events('t', {}, { types: [] })).toEqual([]);
    expect(audit.events('u').map((e) => e.taskId)).toEqual(['u']);
  });

  it('head, latest, seqs and type counts', () => {
    const all = audit.events('t');
    expect(audit.head('t')).toEqual({ seq: 12, hash: all.at(-1)!.hash });
    expect(audit.head('nobody')).toBeUndefined();
    expect(audit.latest('t', { types: ['git.diff'] })?.data).toEqual({ stat: 'two' });
    expect(audit.latest('t', { types: ['task.outcome'] })).toBeUndefined();
    expect(audit.seqs('t', { refusals: true })).toEqual([9, 10]);
    expect(audit.seqs('t', { types: ['vm.exec'] }, 2)).toEqual([3, 4]);
    expect(Object.fromEntries(audit.typeCounts('t'))).toEqual({
      'git.diff': 2,
      'proxy.egress': 1,
      'proxy.refused': 1,
      'task.created': 1,
      'task.prompt': 1,
      'vm.exec': 6,
    });
  });

  it('verify checks the events still waiting for their commit, and finds a changed one', () => {
    expect(audit.verify('t')).toMatchObject({ ok: true, tasks: 1, events: 12 });
    expect(audit.verify()).toMatchObject({ ok: true, tasks: 2, events: 13 });
    db.exec('DROP TRIGGER audit_events_append_only_update');
    db.prepare(
      `UPDATE audit_events SET data_json = '{"argv":["forged"]}' WHERE task_id = 't' AND seq = 4`,
    ).run();
    expect(audit.verify('t').problems).toEqual([
      { taskId: 't', seq: 4, problem: 'event 4 (vm.exec) was changed after it was written' },
    ]);
    expect(audit.verify('u').ok).toBe(true);
  });

  it('keptTexts and purgeTexts: the purge is chained first, the text goes, the chain verifies', () => {
    const kept = audit.keptTexts('t');
    expect(kept).toEqual([{ seq: 2, bytes: expect.any(Number) }]);
    expect(audit.purgeTexts('t', { reason: 'leaked a secret', operator: 'alice' })).toEqual({
      payloads: 1,
      bytes: kept[0]!.bytes,
    });
    expect(audit.keptTexts('t')).toEqual([]);
    const last = audit.events('t').at(-1)!;
    expect(last).toMatchObject({
      seq: 13,
      type: 'audit.purged',
      data: { purged: [2], reason: 'leaked a secret', operator: 'alice' },
    });
    expect(audit.events('t', { afterSeq: 1, limit: 1 })[0]?.content?.state).toBe('purged');
    expect(audit.purgeTexts('t', { reason: 'again', operator: 'alice' })).toEqual({ payloads: 0, bytes: 0 });
    expect(audit.head('t')?.seq).toBe(13);
    expect(audit.verify()).toMatchObject({ ok: true });
  });
});
