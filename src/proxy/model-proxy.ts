import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { HOP_BY_HOP, type UpstreamAgents, upstreamRequest } from './upstream-request.ts';
import { responseUsage, sseDataReader, type TokenUsage, usageFromEvent } from './usage-meter.ts';

export type { TokenUsage } from './usage-meter.ts';

/** Where each model provider is and the key the proxy adds. A provider left out is refused. */
export interface ModelUpstreams {
  anthropic?: { url: string; apiKey: string };
  openai?: { url: string; apiKey: string };
}

type Provider = keyof ModelUpstreams;

/** The only model endpoints forwarded: what the agent CLIs need. */
const ENDPOINTS: Record<Provider, readonly string[]> = {
  anthropic: ['/v1/messages', '/v1/messages/count_tokens'],
  openai: ['/v1/responses', '/v1/chat/completions'],
};

/** Client headers never forwarded: credentials, and account selectors that belong to the operator. */
const STRIPPED = new Set([
  ...HOP_BY_HOP,
  'authorization',
  'x-api-key',
  'cookie',
  'openai-organization',
  'openai-project',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'accept-encoding',
]);

/** Largest request body rewritten (Chat Completions only; everything else streams). */
const MAX_REWRITTEN_BODY_BYTES = 32 * 1024 * 1024;
/** Largest non-streamed answer kept aside to read its usage. */
const MAX_METERED_JSON_BYTES = 16 * 1024 * 1024;

/** What the model part of a task proxy needs. */
export interface ModelProxyOptions {
  taskId: string;
  upstreams: ModelUpstreams;
  budgetTokens: number;
  onBudgetExceeded(usage: TokenUsage): void;
  agents: UpstreamAgents;
  audit: AuditSink;
  log: Logger;
}

/**
 * Builds the model API forwarder: `/anthropic/v1/messages[/count_tokens]`, `/openai/v1/responses`
 * and `/openai/v1/chat/completions`, with client credentials replaced by the configured key,
 * answers streamed through chunk by chunk, and tokens counted against the task's budget.
 */
export function createModelProxy(options: ModelProxyOptions) {
  const total: TokenUsage = { inputTokens: 0, outputTokens: 0 };
  let exceeded = false;

  const grow = (delta: TokenUsage) => {
    total.inputTokens += delta.inputTokens;
    total.outputTokens += delta.outputTokens;
    if (!exceeded && total.inputTokens + total.outputTokens > options.budgetTokens) {
      exceeded = true;
      options.audit.append(options.taskId, 'proxy.budget_exceeded', {
        budget: options.budgetTokens,
        usage: { ...total },
      });
      options.log.warn({ taskId: options.taskId, usage: total }, 'model token budget exceeded');
      options.onBudgetExceeded({ ...total });
    }
  };

  const refuse = (res: ServerResponse, provider: Provider, status: number, message: string, path: string) => {
    options.audit.append(options.taskId, 'proxy.refused', { provider, path, status, reason: message });
    const body =
      provider === 'anthropic'
        ? { type: 'error', error: { type: 'permission_error', message } }
        : { error: { message, type: 'airlock_refused', code: 'airlock_refused' } };
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  return {
    /** Whether `target` is under a model prefix (unknown endpoints there are refused here). */
    handles: (target: string) => /^\/(anthropic|openai)(\/|$|\?)/.test(target),
    usage: (): TokenUsage => ({ ...total }),

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://proxy.invalid');
      const provider = url.pathname.split('/')[1] as Provider;
      const path = url.pathname.slice(provider.length + 1);
      const upstream = options.upstreams[provider];
      if (req.method !== 'POST' || !ENDPOINTS[provider].includes(path)) {
        return refuse(
          res,
          provider,
          403,
          `airlock: ${req.method} ${url.pathname} is not an allowed model endpoint`,
          path,
        );
      }
      if (!upstream) return refuse(res, provider, 403, `airlock: no ${provider} API key is configured`, path);
      if (exceeded) {
        return refuse(
          res,
          provider,
          403,
          `airlock: this task used its model budget of ${options.budgetTokens} tokens; no further model calls`,
          path,
        );
      }
      const headers: OutgoingHttpHeaders = { 'accept-encoding': 'identity' };
      for (const [name, value] of Object.entries(req.headers)) {
        if (!STRIPPED.has(name) && value !== undefined) headers[name] = value;
      }
      if (provider === 'anthropic') headers['x-api-key'] = upstream.apiKey;
      else headers.authorization = `Bearer ${upstream.apiKey}`;

      let body: Buffer | undefined;
      if (path === '/v1/chat/completions') {
        body = await withStreamUsage(req);
        headers['content-length'] = String(body.length);
        delete headers['transfer-encoding'];
      }
      const base = new URL(upstream.url);
      const target = new URL(`${base.pathname.replace(/\/+$/, '')}${path}${url.search}`, base);
      const meter = responseUsage(grow);
      const started = performance.now();
      let status = 502;
      try {
        await new Promise<void>((resolve, reject) => {
          const up = upstreamRequest(options.agents, target, 'POST', headers);
          up.on('error', reject);
          res.on('close', () => {
            if (!res.writableFinished) up.destroy();
          });
          up.on('response', (upRes) => {
            status = upRes.statusCode ?? 502;
            const out: OutgoingHttpHeaders = {};
            for (const [name, value] of Object.entries(upRes.headers)) {
              if (!HOP_BY_HOP.has(name) && name !== 'set-cookie' && value !== undefined) out[name] = value;
            }
            res.writeHead(status, out);
            res.flushHeaders();
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
            upRes.on('data', (chunk: Buffer) => {
              if (!res.write(chunk)) {
                upRes.pause();
                res.once('drain', () => upRes.resume());
              }
              feed?.(chunk);
            });
            upRes.on('end', () => {
              if (
                json.length &&
                jsonBytes <= MAX_METERED_JSON_BYTES &&
                path !== '/v1/messages/count_tokens'
              ) {
                try {
                  observe(JSON.parse(Buffer.concat(json).toString('utf8')));
                } catch {
                  // An answer that is not JSON carries no usage to count.
                }
              }
              res.end();
              resolve();
            });
            upRes.on('error', reject);
          });
          if (body) up.end(body);
          else req.pipe(up);
        });
      } catch (error) {
        options.log.warn(
          { taskId: options.taskId, provider, path, err: errorMessage(error) },
          'model upstream failed',
        );
        if (!res.headersSent) {
          return refuse(
            res,
            provider,
            502,
            `airlock: the ${provider} API could not be reached: ${errorMessage(error)}`,
            path,
          );
        }
        res.destroy();
      } finally {
        options.audit.append(options.taskId, 'proxy.model', {
          provider,
          path,
          status,
          usage: meter.total(),
          duration_ms: Math.round(performance.now() - started),
        });
      }
    },
  };
}

/** Reads a Chat Completions request and, when it streams, asks for the final usage chunk. */
async function withStreamUsage(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REWRITTEN_BODY_BYTES) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  const raw = Buffer.concat(chunks);
  try {
    const parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    if (parsed.stream !== true) return raw;
    const streamOptions = typeof parsed.stream_options === 'object' ? parsed.stream_options : {};
    return Buffer.from(
      JSON.stringify({ ...parsed, stream_options: { ...streamOptions, include_usage: true } }),
    );
  } catch {
    return raw;
  }
}
