import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openDatabase } from '../../src/store/database.ts';

describe('verifyApprovals (through verifyAuditChains)', () => {
  it('refuses a push of a held result that no recorded approval allowed', () => {
    const db = openDatabase(':memory:');
    const audit = new AuditLog(db, systemClock, new SecretRedactor());
    audit.append('t1', 'task.created', {});
    audit.append('t1', 'git.ref_update', {
      ref: 'refs/heads/airlock/x',
      new: 'abc',
      decision: 'forwarded',
      by: 'host',
      approval: 7,
    });
    audit.flush();
    const report = verifyAuditChains(db, 't1');
    expect(report.ok).toBe(false);
    expect(report.problems[0]?.problem).toBe(
      'event 2 pushes a held result that no recorded approval allowed',
    );
  });
});
