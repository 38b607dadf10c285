import { verify } from '@octokit/webhooks-methods';
import { type Context, Hono } from 'hono';
import type { Probot } from 'probot';
import type { Logger } from '../logger.ts';
import type { IngressGate } from './ingress-gate.ts';

/** The largest webhook body GitHub sends is 25 MB; refuse anything bigger without reading it all. */
const MAX_BODY_BYTES = 25 * 1024 * 1024;

/**
 * POST /api/github/webhooks: verifies the signature (401 when it does not match, nothing stored),
 * parses the JSON (400 when malformed), and hands the event to Probot's dispatcher. Unknown events
 * and actions are accepted and ignored.
 */
export function webhookRoute(deps: {
  probot: Probot;
  secret: string;
  log: Logger;
  /** Told about each webhook so background work yields to acknowledgements. */
  gate?: IngressGate;
}): Hono {
  const app = new Hono();
  app.post('/', async (c) => {
    const answered = deps.gate?.arrive();
    try {
      return await handle(c);
    } finally {
      answered?.();
    }
  });
  return app;

  async function handle(c: Context): Promise<Response> {
    const id = c.req.header('x-github-delivery');
    const name = c.req.header('x-github-event');
    const signature = c.req.header('x-hub-signature-256');
    if (!id || !name || !signature) {
      return c.json(
        { error: 'missing X-GitHub-Delivery, X-GitHub-Event or X-Hub-Signature-256 header' },
        400,
      );
    }
    const length = Number(c.req.header('content-length') ?? 0);
    if (length > MAX_BODY_BYTES) return c.json({ error: 'payload too large' }, 413);
    const body = await c.req.text();
    const valid = await verify(deps.secret, body, signature).catch(() => false);
    if (!valid) {
      deps.log.warn(
        { deliveryId: id, event: name },
        'webhook signature does not match: check WEBHOOK_SECRET',
      );
      return c.json({ error: 'signature does not match the payload and WEBHOOK_SECRET' }, 401);
    }
    let payload: unknown;
    try {
      payload = JSON.parse(body);
    } catch {
      return c.json({ error: 'payload is not valid JSON' }, 400);
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return c.json({ error: 'payload must be a JSON object' }, 400);
    }
    await deps.probot.receive({ id, name, payload } as Parameters<Probot['receive']>[0]);
    return c.json({ ok: true }, 200);
  }
}
