import type { Probot } from 'probot';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { IngressGate } from './ingress-gate.ts';
import { MAX_DISPATCH_ATTEMPTS, type WebhookInbox } from './webhook-inbox.ts';

/** Work done between two looks at the webhook gate, so a burst of deliveries is answered first. */
const SLICE_MS = 4;
const BATCH = 100;

/**
 * Hands stored deliveries to Probot, oldest first, and marks each dispatched. Probot's handler
 * stores the delivery's intent keyed by the delivery id, so a dispatch repeated after a crash
 * (handled, but not yet marked) records nothing twice. A delivery whose dispatch keeps throwing is
 * set aside after {@link MAX_DISPATCH_ATTEMPTS} tries, with the error kept on its row.
 * Returns how many deliveries it dispatched or set aside.
 */
export async function dispatchWebhooks(deps: {
  inbox: WebhookInbox;
  probot: Probot;
  log: Logger;
  gate?: IngressGate;
}): Promise<number> {
  const batch = deps.inbox.waiting(BATCH);
  let done = 0;
  let sliceEnds = 0;
  for (const delivery of batch) {
    if (performance.now() >= sliceEnds) {
      await deps.gate?.yield();
      sliceEnds = performance.now() + SLICE_MS;
    }
    const { deliveryId: id, event: name } = delivery;
    try {
      const payload = JSON.parse(delivery.payload) as unknown;
      await deps.probot.receive({ id, name, payload } as Parameters<Probot['receive']>[0]);
      deps.inbox.done(id);
      done++;
    } catch (error) {
      const message = errorMessage(error);
      const attempts = deps.inbox.failed(id, message);
      if (attempts >= MAX_DISPATCH_ATTEMPTS) {
        deps.inbox.done(id, message);
        done++;
        deps.log.error({ deliveryId: id, event: name, attempts, err: message }, 'webhook set aside');
      } else {
        deps.log.warn({ deliveryId: id, event: name, attempts, err: message }, 'webhook dispatch failed');
      }
    }
  }
  return done;
}
