import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from '../logger.ts';
import { traceParentOf } from '../tracing/trace-parent.ts';
import type { IngressGate } from './ingress-gate.ts';
import type { WebhookInbox } from './webhook-inbox.ts';

/** Where GitHub posts deliveries (the webhook URL in app.yml and the manifest flow). */
export const WEBHOOK_PATH = '/api/github/webhooks';

/** The largest webhook body GitHub sends is 25 MB; refuse anything bigger without reading it all. */
const MAX_BODY_BYTES = 25 * 1024 * 1024;

/** A Node request listener for {@link WEBHOOK_PATH}. */
export type WebhookListener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * POST /api/github/webhooks: verifies the signature (401 when it does not match, nothing stored),
 * checks the body is a JSON object (400 when not), stores it in the inbox keyed by its delivery id
 * and answers 200; a redelivery is answered 200 and stored nothing. Probot's dispatcher gets the
 * event afterwards (see dispatchWebhooks), so unknown events and actions are accepted here and
 * ignored there. Each delivery starts a trace (`webhook.receive`, stored with the delivery), which
 * the stages after this one continue, up to the end of the task it may become.
 *
 * This is the one hot path of the control plane, so it is a plain Node listener: no Request and
 * Response objects are built for it, the signature is checked synchronously, and nothing but one
 * INSERT stands between GitHub and its answer.
 */
export function webhookListener(deps: {
  inbox: Pick<WebhookInbox, 'store'>;
  /** Called when a new delivery is stored. */
  stored(): void;
  secret: string;
  log: Logger;
  /** Told about each webhook so background work yields to acknowledgements. */
  gate?: IngressGate;
  tracer: Tracer;
}): WebhookListener {
  return (req, res) => {
    const answered = deps.gate?.arrive();
    // A root span whatever the request's headers say: a delivery's trace starts here.
    const span = deps.tracer.startSpan(
      'webhook.receive',
      { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: req.method ?? '' } },
      ROOT_CONTEXT,
    );
    res.once('close', () => {
      answered?.();
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, res.statusCode);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    context.with(trace.setSpan(ROOT_CONTEXT, span), () =>
      handle(req, res).catch((error: unknown) => {
        deps.log.error({ err: error }, 'webhook handling failed');
        if (!res.headersSent) reply(res, 500, { error: 'the delivery could not be stored; redeliver it' });
        else res.destroy();
      }),
    );
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') {
      req.resume();
      return reply(res, 405, { error: 'webhooks are POSTed' }, { allow: 'POST' });
    }
    const id = header(req, 'x-github-delivery');
    const name = header(req, 'x-github-event');
    const signature = header(req, 'x-hub-signature-256');
    if (!id || !name || !signature) {
      req.resume();
      return reply(res, 400, {
        error: 'missing X-GitHub-Delivery, X-GitHub-Event or X-Hub-Signature-256 header',
      });
    }
    const body = await readBody(req);
    if (body === undefined) return reply(res, 413, { error: 'payload too large' }, { connection: 'close' });
    if (!signatureMatches(deps.secret, body, signature)) {
      deps.log.warn(
        { deliveryId: id, event: name },
        'webhook signature does not match: check WEBHOOK_SECRET',
      );
      return reply(res, 401, { error: 'signature does not match the payload and WEBHOOK_SECRET' });
    }
    const text = body.toString('utf8');
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      return reply(res, 400, { error: 'payload is not valid JSON' });
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return reply(res, 400, { error: 'payload must be a JSON object' });
    }
    const span = trace.getActiveSpan();
    span?.setAttributes({ 'airlock.delivery.id': id, 'airlock.github.event': name });
    const stored = await deps.inbox.store(id, name, text, traceParentOf(span));
    span?.setAttribute('airlock.webhook.stored', stored);
    reply(res, 200, stored === 'stored' ? { ok: true } : { ok: true, duplicate: true });
    if (stored === 'stored') deps.stored();
  }
}

/** GitHub's `sha256=<hex>` HMAC of the raw body, compared in constant time. */
export function signatureMatches(secret: string, body: Buffer, signature: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The whole body, or undefined (and the connection dropped after the answer) when it is too big. */
function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.pause();
        resolve(undefined);
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}

function reply(
  res: ServerResponse,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
