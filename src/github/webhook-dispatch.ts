import type { Span, Tracer } from '@opentelemetry/api';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { failSpan } from '../tracing/in-span.ts';
import { contextOf, traceParentOf, withSpan } from '../tracing/trace-parent.ts';
import type { DeliveryLog } from './delivery-log.ts';
import type { IngressGate } from './ingress-gate.ts';
import type { InboxDelivery, WebhookInbox } from './webhook-inbox.ts';
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
export async function recordIntents(deps: DispatchDeps): Promise<number> {
  const batch = deps.inbox.waiting(BATCH);
  let sliceEnds = 0;
  for (const delivery of batch) {
    if (performance.now() >= sliceEnds) {
      await deps.gate?.yield();
      sliceEnds = performance.now() + SLICE_MS;
    }
    // The delivery's trace, continued from the listener's span (stored with the body).
    const span = deps.tracer.startSpan(
      'webhook.dispatch',
      { attributes: { 'airlock.delivery.id': delivery.deliveryId, 'airlock.github.event': delivery.event } },
      contextOf(delivery.traceParent),
    );
    try {
      withSpan(span, () => dispatchOne(deps, delivery, span));
    } finally {
      span.end();
    }
  }
  return batch.length;
}

interface DispatchDeps {
  inbox: WebhookInbox;
  deliveries: DeliveryLog;
  tasks: { transaction<T>(fn: () => T): T };
  appSlug: string;
  log: Logger;
  gate?: IngressGate;
  tracer: Tracer;
}

function dispatchOne(deps: DispatchDeps, delivery: InboxDelivery, span: Span): void {
  const { deliveryId: id, event: name } = delivery;
  const fields = { deliveryId: id, event: name };
  let intent: ReturnType<typeof webhookIntent>;
  try {
    intent = webhookIntent({ id, name, payload: JSON.parse(delivery.payload) }, { slug: deps.appSlug });
  } catch (error) {
    deps.inbox.done(id, errorMessage(error));
    failSpan(span, error, { 'airlock.webhook.intent': 'unreadable' });
    deps.log.error(
      { ...fields, err: errorMessage(error) },
      'webhook set aside: its payload could not be read',
    );
    return;
  }
  if ('ignored' in intent) {
    deps.inbox.done(id);
    span.setAttribute('airlock.webhook.intent', 'ignored');
    deps.log.debug({ ...fields, reason: intent.ignored }, 'webhook ignored');
    return;
  }
  span.setAttributes({ 'airlock.webhook.intent': intent.type, 'airlock.repo': intent.origin.repo.fullName });
  const stored = deps.tasks.transaction(() => {
    const result = deps.deliveries.record(intent, delivery.receivedAt, traceParentOf(span));
    deps.inbox.done(id);
    return result;
  });
  deps.log.info(
    { ...fields, intent: intent.type, repo: intent.origin.repo.fullName, stored },
    'webhook accepted',
  );
}
