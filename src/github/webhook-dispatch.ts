import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import type { DeliveryLog } from './delivery-log.ts';
import type { IngressGate } from './ingress-gate.ts';
import type { WebhookInbox } from './webhook-inbox.ts';
import { type Intent, webhookIntent } from './webhook-intent.ts';

/** Work done between two looks at the webhook gate, so a burst of deliveries is answered first. */
const SLICE_MS = 4;
const BATCH = 100;

/** What dispatching one delivery came to. */
type Dispatched =
  | { deliveryId: string; event: string; unreadable: string }
  | { deliveryId: string; event: string; ignored: string }
  | { deliveryId: string; event: string; intent: Intent; stored: 'recorded' | 'duplicate' };

/**
 * Turns stored deliveries into intents, oldest first: each delivery is taken from the inbox, its
 * intent (if it is one) recorded in the delivery log and its inbox row marked dispatched in one
 * transaction, so a crash repeats nothing and loses nothing, and processes sharing the database
 * never take the same delivery (see WebhookInbox.next). Parsing is pure; a delivery it cannot read
 * is set aside with the error on its row (a bug to look at, not a transient failure to retry).
 * Returns how many deliveries it handled.
 */
export async function recordIntents(deps: {
  store: Pick<Store, 'transaction'>;
  inbox: Pick<WebhookInbox, 'next' | 'done'>;
  deliveries: Pick<DeliveryLog, 'record'>;
  appSlug: string;
  log: Logger;
  gate?: IngressGate;
}): Promise<number> {
  let sliceEnds = 0;
  let handled = 0;
  while (handled < BATCH) {
    if (performance.now() >= sliceEnds) {
      await deps.gate?.yield();
      sliceEnds = performance.now() + SLICE_MS;
    }
    // Read committed on PostgreSQL: the body's one lock is the row it takes, skipping locked ones.
    const dispatched = await deps.store.transaction(() => dispatchNext(deps), { readCommitted: true });
    if (!dispatched) break;
    handled++;
    const fields = { deliveryId: dispatched.deliveryId, event: dispatched.event };
    if ('unreadable' in dispatched) {
      deps.log.error(
        { ...fields, err: dispatched.unreadable },
        'webhook set aside: its payload could not be read',
      );
    } else if ('ignored' in dispatched) {
      deps.log.debug({ ...fields, reason: dispatched.ignored }, 'webhook ignored');
    } else {
      const { intent, stored } = dispatched;
      deps.log.info(
        { ...fields, intent: intent.type, repo: intent.origin.repo.fullName, stored },
        'webhook accepted',
      );
    }
  }
  return handled;
}

/** Takes the oldest waiting delivery and records what it asks for; runs in a transaction. */
async function dispatchNext(deps: {
  inbox: Pick<WebhookInbox, 'next' | 'done'>;
  deliveries: Pick<DeliveryLog, 'record'>;
  appSlug: string;
}): Promise<Dispatched | undefined> {
  const delivery = await deps.inbox.next();
  if (!delivery) return undefined;
  const { deliveryId: id, event: name } = delivery;
  let intent: ReturnType<typeof webhookIntent>;
  try {
    intent = webhookIntent({ id, name, payload: JSON.parse(delivery.payload) }, { slug: deps.appSlug });
  } catch (error) {
    await deps.inbox.done(id, errorMessage(error));
    return { deliveryId: id, event: name, unreadable: errorMessage(error) };
  }
  if ('ignored' in intent) {
    await deps.inbox.done(id);
    return { deliveryId: id, event: name, ignored: intent.ignored };
  }
  const stored = await deps.deliveries.record(intent, delivery.receivedAt);
  await deps.inbox.done(id);
  return { deliveryId: id, event: name, intent, stored };
}
