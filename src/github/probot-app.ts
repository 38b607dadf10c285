import type { ApplicationFunction } from 'probot';
import type { Logger } from '../logger.ts';
import type { DeliveryLog } from './delivery-log.ts';
import { webhookIntent } from './webhook-intent.ts';

/**
 * airlock's Probot application: every handler only parses the event into an intent, dedupes it by
 * delivery id and stores it. Permission checks, configuration and GitHub calls happen later in
 * the intake worker, so GitHub gets its answer in milliseconds.
 */
export function airlockProbotApp(deps: {
  deliveries: DeliveryLog;
  appSlug: () => string;
  wake(): void;
  log: Logger;
}): ApplicationFunction {
  return (app) => {
    app.onAny(async (context) => {
      const fields = { deliveryId: context.id, event: context.name };
      const intent = webhookIntent(
        { id: context.id, name: context.name, payload: context.payload },
        { slug: deps.appSlug() },
      );
      if ('ignored' in intent) {
        deps.log.debug({ ...fields, reason: intent.ignored }, 'webhook ignored');
        return;
      }
      const stored = deps.deliveries.record(intent);
      deps.log.info(
        { ...fields, intent: intent.type, repo: intent.origin.repo.fullName, stored },
        'webhook accepted',
      );
      if (stored === 'recorded') deps.wake();
    });
  };
}
