import { expect, it } from 'vitest';
import { DeliveryLog } from '../../src/github/delivery-log.ts';
import { type Intent, webhookIntent } from '../../src/github/webhook-intent.ts';
import { openDatabase } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

const DAY = 86_400_000;

/** A real `issues.labeled` delivery's intent. */
function labelIntent(deliveryId: string): Intent {
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: 7, fullName: 'acme/app' },
    sender: { login: 'dev', id: 2 },
    installationId: 1,
  });
  const intent = webhookIntent({ id: deliveryId, name: 'issues', payload }, { slug: 'airlock' });
  if ('ignored' in intent) throw new Error(intent.ignored);
  return intent;
}

it('prunes processed deliveries older than the keep period and never pending ones', () => {
  const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
  const log = new DeliveryLog(openDatabase(':memory:'), clock);
  for (const id of ['old-done', 'old-refused', 'old-pending']) log.record(labelIntent(id));
  log.finish('old-done', 'done', 'task created', 'task-1');
  log.finish('old-refused', 'refused', 'no write permission');
  clock.advance(29 * DAY);
  log.record(labelIntent('recent-done'));
  log.finish('recent-done', 'done', 'task created', 'task-2');

  expect(log.prune(30)).toBe(0);
  clock.advance(2 * DAY);
  expect(log.prune(30)).toBe(2);
  expect(log.get('old-done')).toBeUndefined();
  expect(log.get('old-refused')).toBeUndefined();
  expect(log.get('old-pending')?.status).toBe('pending');
  expect(log.get('recent-done')).toEqual({ status: 'done', outcome: 'task created', taskId: 'task-2' });
  expect(log.pending().map((d) => d.deliveryId)).toEqual(['old-pending']);
});
