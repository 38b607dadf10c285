import { expect, it } from 'vitest';
import { INBOX_KEEP_DAYS, WebhookInbox } from '../../src/github/webhook-inbox.ts';
import { openDatabase } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';

it('stores a delivery id once, hands out waiting ones oldest first, and drops bodies once dispatched', () => {
  const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
  const inbox = new WebhookInbox(openDatabase(':memory:'), clock);
  expect(inbox.store('a', 'issues', '{"n":1}')).toBe('stored');
  clock.advance(1000);
  expect(inbox.store('b', 'issues', '{"n":2}')).toBe('stored');
  expect(inbox.store('a', 'issues', '{"n":1}')).toBe('duplicate');
  expect(inbox.waiting(10).map((d) => d.deliveryId)).toEqual(['a', 'b']);
  inbox.done('a');
  expect(inbox.waiting(10).map((d) => d.deliveryId)).toEqual(['b']);
  expect(inbox.store('a', 'issues', '{"n":1}')).toBe('duplicate');
});

it('prunes dispatched rows older than the keep period, never waiting ones', () => {
  const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
  const inbox = new WebhookInbox(openDatabase(':memory:'), clock);
  inbox.store('old-done', 'issues', '{"n":1}');
  inbox.store('old-waiting', 'issues', '{"n":2}');
  inbox.done('old-done');
  clock.advance((INBOX_KEEP_DAYS - 1) * 86_400_000);
  inbox.store('recent-done', 'issues', '{"n":3}');
  inbox.done('recent-done');
  expect(inbox.prune()).toBe(0);
  clock.advance(2 * 86_400_000);
  expect(inbox.prune()).toBe(1);
  expect(inbox.store('old-done', 'issues', '{"n":1}')).toBe('stored');
  expect(inbox.store('recent-done', 'issues', '{"n":3}')).toBe('duplicate');
  expect(inbox.waiting(10).map((d) => d.deliveryId)).toEqual(['old-waiting', 'old-done']);
});

it('treats a signed body re-posted under a new delivery id as the same delivery', () => {
  const inbox = new WebhookInbox(openDatabase(':memory:'), new ManualClock());
  const body = '{"action":"labeled","issue":{"number":7}}';
  expect(inbox.store('original', 'issues', body)).toBe('stored');
  expect(inbox.store('replayed-with-a-new-id', 'issues', body)).toBe('duplicate');
  inbox.done('original');
  expect(inbox.store('replayed-after-dispatch', 'issues', body)).toBe('duplicate');
  expect(inbox.waiting(10)).toEqual([]);
});
