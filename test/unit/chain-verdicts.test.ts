import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { ChainVerdicts } from '../../src/audit/chain-verdicts.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Store } from '../../src/store/database.ts';
import { tamper } from '../helpers/audit-tamper.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('chain verdicts on %s', (dialect) => {
  let store: Store;
  beforeEach(async () => {
    store = await openTestStore(dialect);
  });
  afterEach(async () => {
    await store.close();
  });

  it('recomputes a chain only when its head moved (at most every few seconds) or the verdict is old', async () => {
    const clock = new ManualClock();
    const audit = new AuditLog(store, clock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
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
    expect(await verdicts.of('t')).toMatchObject({ state: 'empty', events: 0 });
    audit.append('t', 'task.created', {});
    audit.append('t', 'vm.exec', { argv: ['true'] });
    clock.advance(5_000);
    expect(await verdicts.of('t')).toMatchObject({ state: 'verified', events: 2 });
    expect(await verdicts.of('t')).toMatchObject({ state: 'verified', events: 2 });
    expect(verifications).toBe(2);
    // Changed behind airlock's back: the cached verdict stands until it is old, then the change shows.
    await tamper(
      store,
      `UPDATE audit_events SET data_json = '{"argv":["false"]}' WHERE task_id = 't' AND seq = 2`,
    );
    expect((await verdicts.of('t')).state).toBe('verified');
    clock.advance(60_000);
    expect(await verdicts.of('t')).toMatchObject({ state: 'broken', problem: { seq: 2 } });
    expect(verifications).toBe(3);
    // A new event moves the head: verified again once a few seconds have passed (and still broken).
    audit.append('t', 'vm.exec_audit_incomplete', { reason: 'no answer' });
    expect(await verdicts.of('t')).toMatchObject({ events: 2 });
    expect(verifications).toBe(3);
    clock.advance(5_000);
    expect(await verdicts.of('t')).toMatchObject({
      state: 'broken',
      events: 3,
      execAuditGaps: [{ seq: 3, type: 'vm.exec_audit_incomplete' }],
    });
    expect(verifications).toBe(4);
  });
});
