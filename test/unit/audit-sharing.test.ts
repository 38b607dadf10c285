import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/audit-event.ts';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { createTestDatabase } from '../helpers/test-store.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Two processes on one PostgreSQL database: a worker writes a task's events, a control plane
// serves the task's live page (issue 16, live pages across replicas).
describe('audit events across processes on postgres', () => {
  const opened: Store[] = [];
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    for (const store of opened.splice(0)) await store.close();
  });

  async function process(url: string) {
    const store = await openStore({ url });
    opened.push(store);
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 64 } });
    stops.push(await audit.shareAcrossProcesses());
    return { store, audit };
  }

  it('delivers what another process commits to listeners subscribed everywhere, in chain order', async () => {
    const url = await createTestDatabase();
    const worker = await process(url);
    const control = await process(url);
    const everywhere: AuditEvent[] = [];
    const local: AuditEvent[] = [];
    control.audit.subscribe((e) => everywhere.push(e), { everywhere: true });
    control.audit.subscribe((e) => local.push(e));
    for (let i = 0; i < 50; i++) worker.audit.append('t1', 'vm.exec', { argv: [`step-${i}`] });
    await worker.audit.flush();
    await worker.store.transaction(async () => worker.audit.append('t1', 'task.state', { state: 'running' }));
    control.audit.append('t1', 'github.comment', { id: 1 });
    await control.audit.flush();
    await waitFor(() => everywhere.length === 52, 10_000, 'every event at the control plane');
    // Each exactly once; the other process's in chain order (this one's own is told at once).
    expect(everywhere.map((e) => e.seq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 52 }, (_, i) => i + 1),
    );
    const remote = everywhere.filter((e) => e.type !== 'github.comment').map((e) => e.seq);
    expect(remote).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    expect(everywhere.filter((e) => e.type === 'github.comment')).toHaveLength(1);
    expect(everywhere[0]).toMatchObject({ taskId: 't1', type: 'vm.exec', data: { argv: ['step-0'] } });
    // Listeners not subscribed everywhere hear of this process's own events only (metrics, say).
    expect(local.map((e) => e.type)).toEqual(['github.comment']);
  });
});
