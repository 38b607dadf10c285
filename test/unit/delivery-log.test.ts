import { describe, expect, it } from 'vitest';
import { DeliveryLog } from '../../src/github/delivery-log.ts';
import { CLAIM_LEASE_MS } from '../../src/store/claim-lease.ts';
import { labelIntent } from '../helpers/label-intent.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, testStores } from '../helpers/test-store.ts';

const DAY = 86_400_000;

describe.each(DIALECTS)('the delivery log on %s', (dialect) => {
  const open = testStores(dialect);

  it('prunes processed deliveries older than the keep period and never pending ones', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const log = new DeliveryLog(await open(), clock);
    for (const id of ['old-done', 'old-refused', 'old-pending']) {
      await log.record(labelIntent(id));
      clock.advance(1);
    }
    const done = await log.claim();
    expect(done?.deliveryId).toBe('old-done');
    await log.finish(done!, 'done', 'task created', 'task-1');
    const refused = await log.claim();
    expect(refused?.deliveryId).toBe('old-refused');
    await log.finish(refused!, 'refused', 'no write permission');
    clock.advance(29 * DAY);
    await log.record(labelIntent('recent-done', 'acme/other'));
    // Oldest first: the pending one is taken in (and stays so) before the recent one.
    expect((await log.claim())?.deliveryId).toBe('old-pending');
    const next = await log.claim();
    expect(next?.deliveryId).toBe('recent-done');
    await log.finish(next!, 'done', 'task created', 'task-2');

    expect(await log.prune(30)).toBe(0);
    clock.advance(2 * DAY);
    expect(await log.prune(30)).toBe(2);
    expect(await log.get('old-done')).toBeUndefined();
    expect(await log.get('old-refused')).toBeUndefined();
    expect((await log.get('old-pending'))?.status).toBe('pending');
    expect(await log.get('recent-done')).toEqual({
      status: 'done',
      outcome: 'task created',
      taskId: 'task-2',
    });
    expect((await log.pending()).map((d) => d.deliveryId)).toEqual(['old-pending']);
  });

  it('records a delivery id once', async () => {
    const log = new DeliveryLog(await open(), new ManualClock());
    expect(await log.record(labelIntent('once'))).toBe('recorded');
    expect(await log.record(labelIntent('once'))).toBe('duplicate');
    expect(await log.pending()).toHaveLength(1);
  });

  it('claims a delivery for one process until it is finished, retried, or its lease runs out', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const log = new DeliveryLog(await open(), clock);
    await log.record(labelIntent('d1', 'acme/one'));
    const first = await log.claim();
    expect(first).toMatchObject({ deliveryId: 'd1', attempts: 0, status: 'pending' });
    expect(await log.claim()).toBeUndefined();
    // Still pending while it is in intake: settling waits for it.
    expect((await log.pending()).map((d) => d.deliveryId)).toEqual(['d1']);

    // The claimant stopped: once the lease ends, another takes the delivery, and the first one's
    // decision can no longer be written.
    clock.advance(CLAIM_LEASE_MS + 1);
    const second = await log.claim();
    expect(second?.deliveryId).toBe('d1');
    await expect(log.finish(first!, 'done', 'task created', 'task-1')).rejects.toThrow(/another process/);
    expect(await log.retryLater(first!, new Error('late'))).toBeUndefined();
    await log.finish(second!, 'done', 'task created', 'task-2');
    expect(await log.get('d1')).toEqual({ status: 'done', outcome: 'task created', taskId: 'task-2' });
  });

  it('takes one delivery of a repository at a time, oldest first, and overtakes one waiting out a back-off', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const log = new DeliveryLog(await open(), clock);
    for (const [id, repo] of [
      ['a1', 'acme/a'],
      ['a2', 'acme/a'],
      ['b1', 'acme/b'],
    ] as const) {
      await log.record(labelIntent(id, repo));
      clock.advance(1);
    }
    const a1 = await log.claim();
    expect(a1?.deliveryId).toBe('a1');
    // a2 waits while a1 is in intake (a label removed must follow the label added); b1 need not.
    const b1 = await log.claim();
    expect(b1?.deliveryId).toBe('b1');
    expect(await log.claim()).toBeUndefined();
    const decision = await log.retryLater(a1!, new Error('GitHub is down'));
    expect(decision).toEqual({ retryAt: new Date(clock.now().getTime() + 1000).toISOString() });
    // a1 waits out its back-off; a2 goes ahead.
    const a2 = await log.claim();
    expect(a2?.deliveryId).toBe('a2');
    await log.finish(a2!, 'done', 'task created');
    expect(await log.claim()).toBeUndefined();
    clock.advance(1000);
    expect(await log.claim()).toMatchObject({ deliveryId: 'a1', attempts: 1 });
  });

  it('finishes a delivery as failed once the retry policy gives up', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const log = new DeliveryLog(await open(), clock);
    await log.record(labelIntent('doomed'));
    clock.advance(25 * 3600_000);
    const claimed = await log.claim();
    expect(await log.retryLater(claimed!, new Error('still down'))).toHaveProperty('giveUp');
    expect(await log.get('doomed')).toMatchObject({
      status: 'failed',
      outcome: expect.stringMatching(/still down/),
    });
    expect(await log.hasPending()).toBe(false);
  });

  it('releases every claim (for SQLite at start, where claims found are a stopped process’s)', async () => {
    const log = new DeliveryLog(await open(), new ManualClock());
    await log.record(labelIntent('held'));
    expect(await log.claim()).toBeDefined();
    expect(await log.claim()).toBeUndefined();
    expect(await log.releaseClaims()).toBe(1);
    expect((await log.claim())?.deliveryId).toBe('held');
  });
});
