import { describe, expect, it } from 'vitest';
import { INBOX_KEEP_DAYS, WebhookInbox } from '../../src/github/webhook-inbox.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, testStores } from '../helpers/test-store.ts';

describe.each(DIALECTS)('the webhook inbox on %s', (dialect) => {
  const open = testStores(dialect);

  it('stores a delivery id once, hands out waiting ones oldest first, and drops bodies once dispatched', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const inbox = new WebhookInbox(await open(), clock);
    expect(await inbox.store('a', 'issues', '{"n":1}')).toBe('stored');
    clock.advance(1000);
    expect(await inbox.store('b', 'issues', '{"n":2}')).toBe('stored');
    expect(await inbox.store('a', 'issues', '{"n":1}')).toBe('duplicate');
    expect((await inbox.waiting(10)).map((d) => d.deliveryId)).toEqual(['a', 'b']);
    await inbox.done('a');
    expect((await inbox.waiting(10)).map((d) => d.deliveryId)).toEqual(['b']);
    expect(await inbox.store('a', 'issues', '{"n":1}')).toBe('duplicate');
  });

  it('prunes dispatched rows older than the keep period, never waiting ones', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const inbox = new WebhookInbox(await open(), clock);
    await inbox.store('old-done', 'issues', '{"n":1}');
    await inbox.store('old-waiting', 'issues', '{"n":2}');
    await inbox.done('old-done');
    clock.advance((INBOX_KEEP_DAYS - 1) * 86_400_000);
    await inbox.store('recent-done', 'issues', '{"n":3}');
    await inbox.done('recent-done');
    expect(await inbox.prune()).toBe(0);
    clock.advance(2 * 86_400_000);
    expect(await inbox.prune()).toBe(1);
    expect(await inbox.store('old-done', 'issues', '{"n":1}')).toBe('stored');
    expect(await inbox.store('recent-done', 'issues', '{"n":3}')).toBe('duplicate');
    expect((await inbox.waiting(10)).map((d) => d.deliveryId)).toEqual(['old-waiting', 'old-done']);
  });

  it('treats a signed body re-posted under a new delivery id as the same delivery', async () => {
    const inbox = new WebhookInbox(await open(), new ManualClock());
    const body = '{"action":"labeled","issue":{"number":7}}';
    expect(await inbox.store('original', 'issues', body)).toBe('stored');
    expect(await inbox.store('replayed-with-a-new-id', 'issues', body)).toBe('duplicate');
    await inbox.done('original');
    expect(await inbox.store('replayed-after-dispatch', 'issues', body)).toBe('duplicate');
    expect(await inbox.waiting(10)).toEqual([]);
  });

  it('hands the oldest waiting delivery to a transaction, which marks it done or leaves it waiting', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const s = await open();
    const inbox = new WebhookInbox(s, clock);
    await inbox.store('first', 'issues', '{"n":1}');
    clock.advance(1);
    await inbox.store('second', 'issues', '{"n":2}');
    await expect(inbox.next()).rejects.toThrow(/inside a transaction/);
    // A transaction that fails after taking a delivery leaves it waiting, body and all.
    await expect(
      s.transaction(async () => {
        const taken = await inbox.next();
        expect(taken).toMatchObject({ deliveryId: 'first', event: 'issues', payload: '{"n":1}' });
        await inbox.done('first');
        throw new Error('crashed while dispatching');
      }),
    ).rejects.toThrow('crashed');
    expect((await inbox.waiting(10)).map((d) => d.payload)).toEqual(['{"n":1}', '{"n":2}']);
    const taken = await s.transaction(async () => {
      const delivery = await inbox.next();
      if (delivery) await inbox.done(delivery.deliveryId);
      return delivery?.deliveryId;
    });
    expect(taken).toBe('first');
    expect((await inbox.waiting(10)).map((d) => d.deliveryId)).toEqual(['second']);
  });
});
