import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/audit-log.ts';
import { eventSummary } from '../../src/web/event-summary.ts';

const created = (data: Record<string, unknown>): AuditEvent => ({
  taskId: 't-1',
  seq: 3,
  ts: '2026-05-01T10:00:00.000Z',
  type: 'vm.created',
  data: { id: 'vm-t1-abc123', accelerator: 'tcg', image: `sha256:${'a'.repeat(64)}`, ...data },
  prevHash: '0'.repeat(64),
  hash: '1'.repeat(64),
});

describe('event summaries', () => {
  it("says how long a VM waited for a place under the host's VM limit, when it waited", () => {
    expect(eventSummary(created({ bootMs: 900, queuedMs: 42_000 }))).toBe(
      'VM vm-t1-abc123, tcg, waited 42000 ms for a place (host at its VM limit), booted in 900 ms, image sha256:aaaaaaaaaaaa',
    );
    expect(eventSummary(created({ bootMs: 900 }))).toBe(
      'VM vm-t1-abc123, tcg, booted in 900 ms, image sha256:aaaaaaaaaaaa',
    );
  });
});
