import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/audit-event.ts';
import { SpendLedger, UNNAMED_MODEL } from '../../src/spend/spend-ledger.ts';
import type { Store } from '../../src/store/database.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

const PRICES = {
  'claude-*': { input_usd_per_mtok: 3, output_usd_per_mtok: 15 },
  'gpt-5': { input_usd_per_mtok: 1, output_usd_per_mtok: 10 },
};

/** A `proxy.model` event as the task proxy records it. */
function call(model: string | undefined, inputTokens: number, outputTokens: number): AuditEvent {
  return {
    taskId: 't',
    seq: 1,
    ts: '2026-03-01T10:00:00.000Z',
    type: 'proxy.model',
    data: { ...(model ? { model } : {}), usage: { inputTokens, outputTokens } },
    prevHash: '',
    hash: '',
  };
}

describe.each(DIALECTS)('the spend ledger on %s', (dialect) => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  const open = async () => {
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-15T12:00:00.000Z'));
    const tasks = new TaskStore(store, clock);
    const task = async (repoFullName: string) => tasks.create(newTaskInput({ repoFullName, repoId: null }));
    return { clock, task, ledger: new SpendLedger(store, clock, PRICES) };
  };

  it('prices each model a task called, counts the unpriced and unnamed, and records again idempotently', async () => {
    const { ledger, task } = await open();
    const t = await task('acme/widgets');
    expect(await ledger.ofTask(t.id)).toBeUndefined();
    const events = [
      call('claude-sonnet-4', 1_000_000, 100_000),
      call('claude-sonnet-4', 500_000, 0),
      call('mystery-1', 10, 20),
      call(undefined, 5, 5),
    ];
    const spend = await ledger.record(t, events);
    expect(spend).toMatchObject({
      inputTokens: 1_500_015,
      outputTokens: 100_025,
      costUsd: 1.5 * 3 + 0.1 * 15,
      unpriced: [UNNAMED_MODEL, 'mystery-1'],
    });
    expect(spend.byModel).toEqual([
      { model: UNNAMED_MODEL, inputTokens: 5, outputTokens: 5, costUsd: null },
      { model: 'claude-sonnet-4', inputTokens: 1_500_000, outputTokens: 100_000, costUsd: 6 },
      { model: 'mystery-1', inputTokens: 10, outputTokens: 20, costUsd: null },
    ]);
    // Recorded again (the task waited for approval, then ran on): replaced, not added.
    expect(await ledger.record(t, [...events, call('gpt-5', 1_000_000, 0)])).toMatchObject({
      costUsd: 7,
      inputTokens: 2_500_015,
    });
    expect(await ledger.ofTask(t.id)).toMatchObject({ costUsd: 7 });
  });

  it('counts spend towards the month it was first recorded in', async () => {
    const { ledger, task, clock } = await open();
    const t = await task('acme/widgets');
    await ledger.record(t, [call('gpt-5', 1_000_000, 0)]);
    clock.advance(30 * 86_400_000);
    await ledger.record(t, [call('gpt-5', 2_000_000, 0)]);
    expect(await ledger.spentUsd('repository', 'acme/widgets', new Date('2026-03-20T00:00:00Z'))).toBe(2);
    expect(await ledger.spentUsd('repository', 'acme/widgets')).toBe(0);
  });

  it('sums a repository and an organisation whatever the case of their names', async () => {
    const { ledger, task } = await open();
    await ledger.record(await task('Acme/Widgets'), [call('gpt-5', 1_000_000, 0)]);
    await ledger.record(await task('acme/widgets'), [call('gpt-5', 2_000_000, 0)]);
    await ledger.record(await task('ACME/gadgets'), [call('gpt-5', 4_000_000, 0)]);
    await ledger.record(await task('other/widgets'), [call('gpt-5', 8_000_000, 0)]);
    expect(await ledger.spentUsd('repository', 'acme/widgets')).toBe(3);
    expect(await ledger.spentUsd('repository', 'ACME/WIDGETS')).toBe(3);
    expect(await ledger.spentUsd('organisation', 'acme')).toBe(7);
    expect(await ledger.spentUsd('organisation', 'Acme')).toBe(7);
    expect(await ledger.spentUsd('organisation', 'nobody')).toBe(0);
    const rows = await ledger.byRepoMonth({ month: '2026-03' });
    expect(rows.map((r) => [r.repo.toLowerCase(), r.inputTokens, r.costUsd])).toEqual([
      ['acme/gadgets', 4_000_000, 4],
      ['acme/widgets', 3_000_000, 3],
      ['other/widgets', 8_000_000, 8],
    ]);
    expect(await ledger.byRepoMonth({ month: '2026-02' })).toEqual([]);
    expect(await ledger.byRepoMonth()).toHaveLength(3);
  });

  it('says which monthly cap a new task would go past, and when it resets', async () => {
    const { ledger, task } = await open();
    await ledger.record(await task('Acme/Widgets'), [call('gpt-5', 5_000_000, 0)]);
    expect(await ledger.capReached('acme/widgets', { repo_monthly_usd: 10 })).toBeUndefined();
    expect(await ledger.capReached('acme/widgets', { repo_monthly_usd: 5 })).toMatchObject({
      scope: 'repository',
      spentUsd: 5,
      month: '2026-03',
      resetsAt: '2026-04-01T00:00:00.000Z',
    });
    expect(
      await ledger.capReached('acme/gadgets', { repo_monthly_usd: 10, org_monthly_usd: 4 }),
    ).toMatchObject({ scope: 'organisation', name: 'acme', capUsd: 4, spentUsd: 5 });
  });
});
