import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Store } from '../../src/store/database.ts';
import { tamper } from '../helpers/audit-tamper.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)(
  'AuditLog reads see every accepted event without the caller flushing, on %s',
  (dialect) => {
    let store: Store;
    let audit: AuditLog;
    /** Events committed on SQLite's one connection, without a turn of the event loop. */
    const storedNow = () =>
      (store.sqlite!.prepare('SELECT count(*) AS n FROM audit_events').get() as { n: number }).n;

    beforeEach(async () => {
      store = await openTestStore(dialect);
      // As the control plane runs it: events wait for a group commit at the end of the turn.
      audit = new AuditLog(store, new ManualClock(), new SecretRedactor(), {
        groupCommit: { maxEvents: 512 },
      });
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
      await store.close();
    });

    it('events: all, a page forwards, a page backwards, filtered by type or to refusals', async () => {
      if (dialect === 'sqlite') expect(storedNow()).toBe(0);
      expect((await audit.events('t')).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      expect((await audit.events('t', { afterSeq: 3, limit: 2 })).map((e) => e.seq)).toEqual([4, 5]);
      expect((await audit.events('t', { beforeSeq: 5, limit: 2 })).map((e) => e.seq)).toEqual([3, 4]);
      expect((await audit.events('t', { beforeSeq: 3, limit: 10 })).map((e) => e.seq)).toEqual([1, 2]);
      expect((await audit.events('t', {}, { types: ['git.diff', 'task.prompt'] })).map((e) => e.seq)).toEqual(
        [2, 11, 12],
      );
      expect(await audit.events('t', {}, { excludeTypes: ['vm.exec'] })).toHaveLength(6);
      expect((await audit.events('t', {}, { refusals: true })).map((e) => e.type)).toEqual([
        'proxy.egress',
        'proxy.refused',
      ]);
      expect(await audit.events('t', {}, { types: [] })).toEqual([]);
      expect((await audit.events('u')).map((e) => e.taskId)).toEqual(['u']);
    });

    it('head, latest, seqs and type counts', async () => {
      const all = await audit.events('t');
      expect(await audit.head('t')).toEqual({ seq: 12, hash: all.at(-1)!.hash });
      expect(await audit.head('nobody')).toBeUndefined();
      expect((await audit.latest('t', { types: ['git.diff'] }))?.data).toEqual({ stat: 'two' });
      expect(await audit.latest('t', { types: ['task.outcome'] })).toBeUndefined();
      expect(await audit.seqs('t', { refusals: true })).toEqual([9, 10]);
      expect(await audit.seqs('t', { types: ['vm.exec'] }, 2)).toEqual([3, 4]);
      expect(Object.fromEntries(await audit.typeCounts('t'))).toEqual({
        'git.diff': 2,
        'proxy.egress': 1,
        'proxy.refused': 1,
        'task.created': 1,
        'task.prompt': 1,
        'vm.exec': 6,
      });
    });

    it('verify checks the events still waiting for their commit, and finds a changed one', async () => {
      expect(await audit.verify('t')).toMatchObject({ ok: true, tasks: 1, events: 12 });
      expect(await audit.verify()).toMatchObject({ ok: true, tasks: 2, events: 13 });
      await tamper(
        store,
        `UPDATE audit_events SET data_json = '{"argv":["forged"]}' WHERE task_id = 't' AND seq = 4`,
      );
      expect((await audit.verify('t')).problems).toEqual([
        { taskId: 't', seq: 4, problem: 'event 4 (vm.exec) was changed after it was written' },
      ]);
      expect((await audit.verify('u')).ok).toBe(true);
    });

    it('keptTexts and purgeTexts: the purge is chained first, the text goes, the chain verifies', async () => {
      const kept = await audit.keptTexts('t');
      expect(kept).toEqual([{ seq: 2, bytes: expect.any(Number) }]);
      expect(await audit.purgeTexts('t', { reason: 'leaked a secret', operator: 'alice' })).toEqual({
        payloads: 1,
        bytes: kept[0]!.bytes,
      });
      expect(await audit.keptTexts('t')).toEqual([]);
      const last = (await audit.events('t')).at(-1)!;
      expect(last).toMatchObject({
        seq: 13,
        type: 'audit.purged',
        data: { purged: [2], reason: 'leaked a secret', operator: 'alice' },
      });
      expect((await audit.events('t', { afterSeq: 1, limit: 1 }))[0]?.content?.state).toBe('purged');
      expect(await audit.purgeTexts('t', { reason: 'again', operator: 'alice' })).toEqual({
        payloads: 0,
        bytes: 0,
      });
      expect((await audit.head('t'))?.seq).toBe(13);
      expect(await audit.verify()).toMatchObject({ ok: true });
    });
  },
);
