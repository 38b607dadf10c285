import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import type { DeliveryLog } from './delivery-log.ts';
import type { IngressGate } from './ingress-gate.ts';
import type { WebhookInbox } from './webhook-inbox.ts';
import { webhookIntent } from './webhook-intent.ts';

/** Work done between two looks at the webhook gate, so a burst of deliveries is answered first. */
const SLICE_MS = 4;
const BATCH = 100;

/**
 * Turns stored deliveries into intents, oldest first: each delivery's intent (if it is one) is
 * recorded in the delivery log and its inbox row marked dispatched in one transaction, so a crash
 * repeats nothing and loses nothing. Parsing is pure; a delivery it cannot read is set aside with
 * the error on its row (a bug to look at, not a transient failure to retry). Returns how many
 * deliveries it handled.
 */
export async function recordIntents(deps: {
  inbox: WebhookInbox;
  deliveries: DeliveryLog;
  store: Pick<Store, 'transaction'>;
  appSlug: string;
  log: Logger;
  gate?: IngressGate;
}): Promise<number> {
  const batch = deps.inbox.waiting(BATCH);
  let sliceEnds = 0;
  for (const delivery of batch) {
    if (performance.now() >= sliceEnds) {
      await deps.gate?.yield();
      sliceEnds = performance.now() + SLICE_MS;
    }
    const { deliveryId: id, event: name } = delivery;
    const fields = { deliveryId: id, event: name };
    let intent: ReturnType<typeof webhookIntent>;
    try {
      intent = webhookIntent({ id, name, payload: JSON.parse(delivery.payload) }, { slug: deps.appSlug });
    } catch (error) {
      deps.inbox.done(id, errorMessage(error));
      deps.log.error(
        { ...fields, err: errorMessage(error) },
        'webhook set aside: its payload could not be read',
      );
      continue;
    }
    if ('ignored' in intent) {
      deps.inbox.done(id);
      deps.log.debug({ ...fields, reason: intent.ignored }, 'webhook ignored');
      continue;
    }
    const stored = await deps.store.transaction(async () => {
      const result = deps.deliveries.record(intent, delivery.receivedAt);
      deps.inbox.done(id);
      return result;
    });
    deps.log.info(
      { ...fields, intent: intent.type, repo: intent.origin.repo.fullName, stored },
      'webhook accepted',
    );
  }
  return batch.length;
}
