import { describe, expect, it } from 'vitest';
import { ExecAuditLimiter } from '../../src/sandbox/exec-audit-limiter.ts';

describe('ExecAuditLimiter', () => {
  it('keeps a burst, then the rate, and counts every record it drops', () => {
    let clock = Date.parse('2026-12-01T10:00:00Z');
    const summaries: Array<{ records: number; from: string; to: string }> = [];
    const limiter = new ExecAuditLimiter(
      { perSecond: 10, burst: 20 },
      (s) => summaries.push(s),
      () => clock,
    );
    let kept = 0;
    for (let i = 0; i < 100; i++) if (limiter.admit()) kept++;
    expect(kept).toBe(20);
    clock += 1_000;
    for (let i = 0; i < 100; i++) if (limiter.admit()) kept++;
    expect(kept).toBe(30);
    limiter.flush();
    expect(summaries).toEqual([
      {
        kind: 'dropped',
        records: 170,
        from: '2026-12-01T10:00:00.000Z',
        to: '2026-12-01T10:00:01.000Z',
        perSecond: 10,
        burst: 20,
      },
    ]);
    limiter.flush();
    expect(summaries).toHaveLength(1);
  });

  it('summarises drops by itself within a second', async () => {
    const summaries: unknown[] = [];
    const limiter = new ExecAuditLimiter({ perSecond: 1, burst: 1 }, (s) => summaries.push(s));
    limiter.admit();
    limiter.admit();
    await expect.poll(() => summaries.length, { timeout: 3_000 }).toBe(1);
  });
});
