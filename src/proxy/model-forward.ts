import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { HOP_BY_HOP, type UpstreamAgents, upstreamRequest } from './upstream-request.ts';
import { responseUsage, sseDataReader, type TokenUsage, usageFromEvent } from './usage-meter.ts';

/** Upstream headers never passed to the guest: cookies, auth challenges, the operator's account. */
const STRIPPED_RESPONSE = new Set([
  ...HOP_BY_HOP,
  'set-cookie',
  'www-authenticate',
  'openai-organization',
  'openai-project',
  'anthropic-organization-id',
]);

/** Largest non-streamed answer kept aside to read its usage. */
const MAX_METERED_JSON_BYTES = 16 * 1024 * 1024;
/**
 * How long, and how much, the proxy keeps reading an answer after its client went away, to count
 * the usage the provider reports at the end. Past either bound the request's estimate is counted.
 */
const DRAIN_AFTER_CLIENT_MS = 120_000;
const DRAIN_AFTER_CLIENT_BYTES = 64 * 1024 * 1024;

/** One model request, checked and ready to send. */
export interface ModelCall {
  provider: string;
  /** The provider-relative endpoint, e.g. `/v1/messages`. */
  path: string;
  target: URL;
  headers: OutgoingHttpHeaders;
  body: Buffer;
  /** What the request may cost, counted when its answer ends without usage; none for free calls. */
  estimate: { input: number; output: number } | undefined;
  /** Feature-header entries removed, for the audit event. */
  dropped: string[];
  /** The model the request names (for spend, priced per model); undefined when it names none. */
  model?: string | undefined;
}

/** What forwarding a model call needs from the task's model proxy. */
export interface ModelForwardContext {
  taskId: string;
  agents: UpstreamAgents;
  audit: AuditSink;
  log: Logger;
  /** Counts usage against the task's budget. */
  addUsage(delta: TokenUsage): void;
  /** Answers with an audited refusal. */
  refuse(res: ServerResponse, provider: string, status: number, message: string, path: string): void;
}

/**
 * Sends a model call upstream and streams the answer back chunk by chunk, counting its usage as
 * it passes; an upstream 401/403 becomes airlock's own 502. When the client goes away the answer
 * is still read to its end (within bounds) so its usage is counted, since the provider bills it.
 */
export async function forwardModelCall(
  context: ModelForwardContext,
  res: ServerResponse,
  call: ModelCall,
): Promise<void> {
  const { provider, path } = call;
  const meter = responseUsage((delta) => context.addUsage(delta));
  const started = performance.now();
  let status = 502;
  let ending: Ending = 'complete';
  let clientGone = false;
  try {
    ending = await new Promise<Ending>((resolve, reject) => {
      const up = upstreamRequest(context.agents, call.target, 'POST', call.headers);
      up.on('error', reject);
      let drained = 0;
      let drainTimer: NodeJS.Timeout | undefined;
      let resumeOnClose: (() => void) | undefined;
      res.on('close', () => {
        if (res.writableFinished) return;
        // The provider bills the whole answer whether or not anyone reads it: keep reading it, to
        // its usage, within bounds.
        clientGone = true;
        context.log.info(
          { taskId: context.taskId, provider, path },
          'model client went away; reading the answer to its usage',
        );
        drainTimer = setTimeout(() => up.destroy(), DRAIN_AFTER_CLIENT_MS);
        drainTimer.unref();
        resumeOnClose?.();
      });
      up.on('response', (upRes) => {
        status = upRes.statusCode ?? 502;
        let settled = false;
        const settle = (how: 'complete' | 'cut') => {
          if (settled) return;
          settled = true;
          clearTimeout(drainTimer);
          resolve(clientGone ? (how === 'complete' ? 'complete' : 'client gone') : how);
        };
        if (status === 401 || status === 403) {
          // The answer may echo the key (masked) or name the operator's account: none of it is
          // the guest's business.
          upRes.resume();
          upRes.on('end', () => settle('complete'));
          upRes.on('close', () => settle(upRes.complete ? 'complete' : 'cut'));
          context.log.error({ taskId: context.taskId, provider, status }, 'model upstream refused the key');
          answerModelError(
            res,
            provider,
            502,
            `airlock: the ${provider} API refused airlock's credentials (HTTP ${status}); the operator must check the configured API key`,
          );
          return;
        }
        const out: OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(upRes.headers)) {
          if (!STRIPPED_RESPONSE.has(name) && value !== undefined) out[name] = value;
        }
        if (!clientGone) {
          res.writeHead(status, out);
          res.flushHeaders();
        }
        const type = String(upRes.headers['content-type'] ?? '');
        const encoded =
          Boolean(upRes.headers['content-encoding']) && upRes.headers['content-encoding'] !== 'identity';
        const observe = (data: unknown) => {
          const usage = usageFromEvent(data);
          if (usage) meter.observe(usage);
        };
        let feed: ((chunk: Buffer) => void) | undefined;
        const json: Buffer[] = [];
        let jsonBytes = 0;
        if (!encoded && type.startsWith('text/event-stream')) feed = sseDataReader(observe);
        else if (!encoded && type.includes('json')) {
          feed = (chunk) => {
            jsonBytes += chunk.length;
            if (jsonBytes <= MAX_METERED_JSON_BYTES) json.push(chunk);
          };
        }
        resumeOnClose = () => upRes.resume();
        upRes.on('data', (chunk: Buffer) => {
          if (clientGone) {
            feed?.(chunk);
            drained += chunk.length;
            if (drained > DRAIN_AFTER_CLIENT_BYTES) up.destroy();
            return;
          }
          // Relay first, count after: reading the usage must not delay the event.
          if (!res.write(chunk)) {
            upRes.pause();
            res.once('drain', () => upRes.resume());
          }
          feed?.(chunk);
        });
        upRes.on('end', () => {
          if (json.length && jsonBytes <= MAX_METERED_JSON_BYTES && path !== '/v1/messages/count_tokens') {
            try {
              observe(JSON.parse(Buffer.concat(json).toString('utf8')));
            } catch {
              // An answer that is not JSON carries no usage to count.
            }
          }
          if (!clientGone) res.end();
          settle('complete');
        });
        upRes.on('close', () => {
          if (!upRes.complete) settle('cut');
        });
        upRes.on('error', () => settle('cut'));
      });
      up.end(call.body);
    });
  } catch (error) {
    context.log.warn(
      { taskId: context.taskId, provider, path, err: errorMessage(error) },
      'model upstream failed',
    );
    if (clientGone) ending = 'client gone';
    else if (!res.headersSent) {
      return context.refuse(
        res,
        provider,
        502,
        `airlock: the ${provider} API could not be reached: ${errorMessage(error)}`,
        path,
      );
    } else ending = 'cut';
  } finally {
    if (ending !== 'complete') {
      // The answer stopped before its usage did: count at least what the request may have cost.
      if (call.estimate)
        meter.observe({ inputTokens: call.estimate.input, outputTokens: call.estimate.output });
      if (!res.writableFinished) res.destroy();
    }
    context.audit.append(context.taskId, 'proxy.model', {
      provider,
      path,
      ...(call.model ? { model: call.model } : {}),
      status,
      usage: meter.total(),
      ...(ending !== 'complete' ? { ending } : {}),
      ...(call.dropped.length ? { dropped_betas: call.dropped } : {}),
      duration_ms: Math.round(performance.now() - started),
    });
  }
}

/** How an upstream answer ended: read to its end, cut off, or read to its end with no one left to send it to. */
type Ending = 'complete' | 'cut' | 'client gone';

/** Answers in the provider's own error shape, so the agent CLI prints the message. */
export function answerModelError(
  res: ServerResponse,
  provider: string,
  status: number,
  message: string,
): void {
  const body =
    provider === 'anthropic'
      ? { type: 'error', error: { type: 'permission_error', message } }
      : { error: { message, type: 'airlock_refused', code: 'airlock_refused' } };
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
