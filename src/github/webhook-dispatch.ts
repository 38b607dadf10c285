import type { Span, Tracer } from '@opentelemetry/api';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import { failSpan, inSpan } from '../tracing/in-span.ts';
import { contextOf, traceParentOf, withSpan } from '../tracing/trace-parent.ts';
import type { DeliveryLog } from './delivery-log.ts';
import type { IngressGate } from './ingress-gate.ts';
import type { InboxDelivery, WebhookInbox } from './webhook-inbox.ts';
import { type Intent, webhookIntent } from './webhook-intent.ts';

/** Work done between two looks at the webhook gate, so a burst of deliveries is answered first. */
const SLICE_MS = 4;
const BATCH = 100;

/** What dispatching one delivery came to, with the span it was dispatched in. */
type Dispatched = { deliveryId: string; event: string; span: Span } & (
  | { unreadable: string }
  | { ignored: string }
  | { intent: Intent; stored: 'recorded' | 'duplicate' }
);

/**
 * Turns stored deliveries into intents, oldest first: each delivery is taken from the inbox, its
 * intent (if it is one) recorded in the delivery log and its inbox row marked dispatched in one
 * transaction, so a crash repeats nothing and loses nothing, and processes sharing the database
 * never take the same delivery (see WebhookInbox.next). Parsing is pure; a delivery it cannot read
 * is set aside with the error on its row (a bug to look at, not a transient failure to retry).
 * Each delivery is dispatched in a span of its trace. Returns how many deliveries it handled.
 */
export async function recordIntents(deps: {
  store: Pick<Store, 'transaction'>;
  inbox: Pick<WebhookInbox, 'next' | 'done'>;
  deliveries: Pick<DeliveryLog, 'record'>;
  appSlug: string;
  log: Logger;
  gate?: IngressGate;
  tracer: Tracer;
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
    // Logged once committed, under the delivery's span so the line carries its trace.
    withSpan(dispatched.span, () => logDispatched(deps.log, dispatched));
  }
  return handled;
}

/** Takes the oldest waiting delivery and records what it asks for; runs in a transaction. */
async function dispatchNext(deps: {
  inbox: Pick<WebhookInbox, 'next' | 'done'>;
  deliveries: Pick<DeliveryLog, 'record'>;
  appSlug: string;
  tracer: Tracer;
}): Promise<Dispatched | undefined> {
  const delivery = await deps.inbox.next();
  if (!delivery) return undefined;
  // The delivery's trace, continued from the listener's span (stored with the body).
  const attributes = { 'airlock.delivery.id': delivery.deliveryId, 'airlock.github.event': delivery.event };
  return inSpan(
    deps.tracer,
    'webhook.dispatch',
    { attributes, parent: contextOf(delivery.traceParent) },
    (span) => dispatchDelivery(deps, delivery, span),
  );
}

async function dispatchDelivery(
  deps: { inbox: Pick<WebhookInbox, 'done'>; deliveries: Pick<DeliveryLog, 'record'>; appSlug: string },
  delivery: InboxDelivery,
  span: Span,
): Promise<Dispatched> {
  const { deliveryId: id, event: name } = delivery;
  let intent: ReturnType<typeof webhookIntent>;
  try {
    intent = webhookIntent({ id, name, payload: JSON.parse(delivery.payload) }, { slug: deps.appSlug });
  } catch (error) {
    await deps.inbox.done(id, errorMessage(error));
    failSpan(span, error, { 'airlock.webhook.intent': 'unreadable' });
    return { deliveryId: id, event: name, span, unreadable: errorMessage(error) };
  }
  if ('ignored' in intent) {
    await deps.inbox.done(id);
    span.setAttribute('airlock.webhook.intent', 'ignored');
    return { deliveryId: id, event: name, span, ignored: intent.ignored };
  }
  span.setAttributes({ 'airlock.webhook.intent': intent.type, 'airlock.repo': intent.origin.repo.fullName });
  const stored = await deps.deliveries.record(intent, delivery.receivedAt, traceParentOf(span));
  await deps.inbox.done(id);
  return { deliveryId: id, event: name, span, intent, stored };
}

function logDispatched(log: Logger, dispatched: Dispatched): void {
  const fields = { deliveryId: dispatched.deliveryId, event: dispatched.event };
  if ('unreadable' in dispatched) {
    log.error({ ...fields, err: dispatched.unreadable }, 'webhook set aside: its payload could not be read');
  } else if ('ignored' in dispatched) {
    log.debug({ ...fields, reason: dispatched.ignored }, 'webhook ignored');
  } else {
    const { intent, stored } = dispatched;
    log.info(
      { ...fields, intent: intent.type, repo: intent.origin.repo.fullName, stored },
      'webhook accepted',
    );
  }
}
