import { expect, it } from 'vitest';
import { coalescedNotify } from '../../src/store/coalesced-notify.ts';

it('sends one notification at a time and folds the calls made meanwhile into one more', async () => {
  const sent: Array<() => void> = [];
  const errors: unknown[] = [];
  const store = {
    notify: (channel: string) => {
      expect(channel).toBe('airlock_webhooks');
      return new Promise<void>((resolve) => sent.push(resolve));
    },
  };
  const announce = coalescedNotify(store, 'airlock_webhooks', (error) => errors.push(error));
  announce();
  for (let i = 0; i < 10; i++) announce();
  expect(sent).toHaveLength(1);
  sent[0]!();
  await new Promise((resolve) => setImmediate(resolve));
  expect(sent).toHaveLength(2);
  sent[1]!();
  await new Promise((resolve) => setImmediate(resolve));
  expect(sent).toHaveLength(2);
  announce();
  expect(sent).toHaveLength(3);
  expect(errors).toEqual([]);
});

it('reports a failed notification and keeps sending', async () => {
  const errors: unknown[] = [];
  let calls = 0;
  const announce = coalescedNotify(
    {
      notify: async () => {
        calls++;
        if (calls === 1) throw new Error('connection lost');
      },
    },
    'airlock_webhooks',
    (error) => errors.push(error),
  );
  announce();
  await new Promise((resolve) => setImmediate(resolve));
  announce();
  await new Promise((resolve) => setImmediate(resolve));
  expect(calls).toBe(2);
  expect(errors).toEqual([new Error('connection lost')]);
});
