import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Store } from '../../src/store/database.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('verifyApprovals (through verifyAuditChains) on %s', (dialect) => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
  });

  it('refuses a push of a held result that no recorded approval allowed', async () => {
    store = await openTestStore(dialect);
    const audit = new AuditLog(store, systemClock, new SecretRedactor());
    audit.append('t1', 'task.created', {});
    audit.append('t1', 'git.ref_update', {
      ref: 'refs/heads/airlock/x',
      new: 'abc',
      decision: 'forwarded',
      by: 'host',
      approval: 7,
    });
    await audit.flush();
    for (const report of [await verifyAuditChains(store, 't1'), await verifyAuditChains(store)]) {
      expect(report.ok).toBe(false);
      expect(report.problems[0]?.problem).toBe(
        'event 2 pushes a held result that no recorded approval allowed',
      );
    }
  });
});
