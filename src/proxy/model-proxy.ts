import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage, ProxyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { filterBetas } from './model-beta-policy.ts';
import { createModelBudget } from './model-budget.ts';
import { type FeatureUse, MODEL_FEATURES } from './model-features.ts';
import { readRequestBody, requestEstimate, requestJson, UnreadableBody } from './model-request-body.ts';
import { modelRequestFeatures } from './model-request-policy.ts';
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
  'content-length',
]);

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
/** Model requests one task may have in flight; more wait their turn. */
export const MAX_MODEL_REQUESTS_IN_FLIGHT = 8;
/**
 * How long, and how much, the proxy keeps reading an answer after its client went away, to count
 * the usage the provider reports at the end. Past either bound the request's estimate is counted.
 */
const DRAIN_AFTER_CLIENT_MS = 120_000;
const DRAIN_AFTER_CLIENT_BYTES = 64 * 1024 * 1024;

/** What the model part of a task proxy needs. */
export interface ModelProxyOptions {
  taskId: string;
  upstreams: ModelUpstreams;
  budgetTokens: number;
  onBudgetExceeded(usage: TokenUsage): void;
  /** Features that reach elsewhere which this task may use (see MODEL_FEATURES); default none. */
  modelFeatures?: readonly string[];
  agents: UpstreamAgents;
  audit: AuditSink;
  log: Logger;
}

/**
 * Builds the model API forwarder: `/anthropic/v1/messages[/count_tokens]`, `/openai/v1/responses`
 * and `/openai/v1/chat/completions`, with client credentials replaced by the configured key,
 * request bodies read and refused when they would make the provider reach elsewhere, answers
 * streamed through chunk by chunk, and tokens reserved and counted against the task's budget.
 */
export function createModelProxy(options: ModelProxyOptions) {
  const allowed = new Set(options.modelFeatures ?? []);
  for (const name of allowed) {
    if (!(name in MODEL_FEATURES)) {
      throw new ProxyError('proxy_config', `unknown model feature ${name}`, {
        hint: `known features: ${Object.keys(MODEL_FEATURES).join(', ')}`,
      });
    }
  }
  const budget = createModelBudget({
    budgetTokens: options.budgetTokens,
    maxInFlight: MAX_MODEL_REQUESTS_IN_FLIGHT,
    onExceeded: (usage) => {
      options.audit.append(options.taskId, 'proxy.budget_exceeded', {
        budget: options.budgetTokens,
        usage,
      });
      options.log.warn({ taskId: options.taskId, usage }, 'model token budget exceeded');
      options.onBudgetExceeded(usage);
    },
  });

  const refuse = (
    res: ServerResponse,
    provider: string,
    status: number,
    message: string,
    path: string,
    detail: Record<string, unknown> = {},
  ) => {
    options.audit.append(options.taskId, 'proxy.refused', {
      channel: 'model',
      provider,
      path,
      status,
      ...detail,
      reason: message,
    });
    answer(res, provider, status, message);
  };
  const budgetSpent = (res: ServerResponse, provider: Provider, path: string) =>
    refuse(
      res,
      provider,
      403,
      `airlock: this task used its model budget of ${options.budgetTokens} tokens; no further model calls`,
      path,
    );

  return {
    /** Whether `target` is under a model prefix (unknown endpoints there are refused here). */
    handles: (target: string) => /^\/(anthropic|openai)(\/|$|\?)/.test(target),
    usage: (): TokenUsage => budget.usage(),

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://proxy.invalid');
      const provider = url.pathname.split('/')[1] as Provider;
      const path = url.pathname.slice(provider.length + 1);
      const upstream = options.upstreams[provider];
      if (req.method !== 'POST' || !ENDPOINTS[provider]?.includes(path)) {
        return refuse(
          res,
          provider,
          403,
          `airlock: ${req.method} ${url.pathname} is not an allowed model endpoint`,
          path,
        );
      }
      if (!upstream) return refuse(res, provider, 403, `airlock: no ${provider} API key is configured`, path);
      if (budget.exceeded()) return budgetSpent(res, provider, path);

      const releaseSlot = await budget.slot();
      let releaseReservation: (() => void) | undefined;
      try {
        let raw: Buffer;
        let json: unknown;
        try {
          raw = await readRequestBody(req);
          json = requestJson(raw, req.headers['content-encoding']);
        } catch (error) {
          if (!(error instanceof UnreadableBody)) throw error;
          return refuse(res, provider, error.status, `airlock: ${error.message}`, path);
        }
        const features = modelRequestFeatures(path, json);
        if ('error' in features) {
          return refuse(
            res,
            provider,
            400,
            `airlock: unreadable ${provider} request: ${features.error}`,
            path,
          );
        }
        const refused = features.filter((use) => !use.feature || !allowed.has(use.feature));
        if (refused.length) {
          return refuse(res, provider, 403, featureRefusal(refused), path, {
            feature: refused[0]!.feature ?? null,
            field: refused[0]!.field,
            features: [...new Set(refused.map((use) => use.feature ?? use.what))],
          });
        }

        const headers: OutgoingHttpHeaders = { 'accept-encoding': 'identity' };
        for (const [name, value] of Object.entries(req.headers)) {
          if (!STRIPPED.has(name) && value !== undefined) headers[name] = value;
        }
        const dropped: string[] = [];
        for (const name of ['anthropic-beta', 'openai-beta'] as const) {
          const filtered = filterBetas(name, req.headers[name], allowed);
          if (filtered.value === undefined) delete headers[name];
          else headers[name] = filtered.value;
          dropped.push(...filtered.dropped);
        }
        if (provider === 'anthropic') headers['x-api-key'] = upstream.apiKey;
        else headers.authorization = `Bearer ${upstream.apiKey}`;
        let body = raw;
        if (path === '/v1/chat/completions' && streams(json)) {
          body = withStreamUsage(json);
          delete headers['content-encoding'];
        }
        headers['content-length'] = String(body.length);

        const estimate = path === '/v1/messages/count_tokens' ? undefined : requestEstimate(raw.length, json);
        releaseReservation = await budget.reserve(estimate ? estimate.input + estimate.output : 0);
        if (!releaseReservation) return budgetSpent(res, provider, path);

        const base = new URL(upstream.url);
        const target = new URL(`${base.pathname.replace(/\/+$/, '')}${path}${url.search}`, base);
        await forward(res, { provider, path, target, headers, body, estimate, dropped });
      } finally {
        releaseReservation?.();
        releaseSlot();
      }
    },
  };

  async function forward(
    res: ServerResponse,
    call: {
      provider: Provider;
      path: string;
      target: URL;
      headers: OutgoingHttpHeaders;
      body: Buffer;
      estimate: { input: number; output: number } | undefined;
      dropped: string[];
    },
  ): Promise<void> {
    const { provider, path } = call;
    const meter = responseUsage((delta) => budget.add(delta));
    const started = performance.now();
    let status = 502;
    let ending: Ending = 'complete';
    let clientGone = false;
    try {
      ending = await new Promise<Ending>((resolve, reject) => {
        const up = upstreamRequest(options.agents, call.target, 'POST', call.headers);
        up.on('error', reject);
        let drained = 0;
        let drainTimer: NodeJS.Timeout | undefined;
        let resumeOnClose: (() => void) | undefined;
        res.on('close', () => {
          if (res.writableFinished) return;
          // The provider bills the whole answer whether or not anyone reads it: keep reading it, to
          // its usage, within bounds.
          clientGone = true;
          options.log.info(
            { taskId: options.taskId, provider, path },
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
            options.log.error({ taskId: options.taskId, provider, status }, 'model upstream refused the key');
            answer(
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
            feed?.(chunk);
            if (clientGone) {
              drained += chunk.length;
              if (drained > DRAIN_AFTER_CLIENT_BYTES) up.destroy();
              return;
            }
            if (!res.write(chunk)) {
              upRes.pause();
              res.once('drain', () => upRes.resume());
            }
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
      options.log.warn(
        { taskId: options.taskId, provider, path, err: errorMessage(error) },
        'model upstream failed',
      );
      if (clientGone) ending = 'client gone';
      else if (!res.headersSent) {
        return refuse(
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
      options.audit.append(options.taskId, 'proxy.model', {
        provider,
        path,
        status,
        usage: meter.total(),
        ...(ending !== 'complete' ? { ending } : {}),
        ...(call.dropped.length ? { dropped_betas: call.dropped } : {}),
        duration_ms: Math.round(performance.now() - started),
      });
    }
  }

  function featureRefusal(refused: FeatureUse[]): string {
    const first = refused[0]!;
    if (!first.feature) {
      return `airlock: the request's ${first.field} (${first.what}) is not something airlock knows to be safe, so it is refused: the model API may not reach anything beyond the task's allowlist`;
    }
    const names = [...new Set(refused.map((use) => use.feature))];
    return `airlock: the request uses ${names.join(', ')} (${first.field}: ${first.what}), which makes the provider reach beyond the task's allowlist; to allow it, the repository lists ${names.map((n) => `\`${n}\``).join(', ')} under \`models.allow\` in .github/airlock.yml and the operator permits it`;
  }
}

/** How an upstream answer ended: read to its end, cut off, or read to its end with no one left to send it to. */
type Ending = 'complete' | 'cut' | 'client gone';

/** Answers in the provider's own error shape, so the agent CLI prints the message. */
function answer(res: ServerResponse, provider: string, status: number, message: string): void {
  const body =
    provider === 'anthropic'
      ? { type: 'error', error: { type: 'permission_error', message } }
      : { error: { message, type: 'airlock_refused', code: 'airlock_refused' } };
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const streams = (request: unknown) =>
  Boolean(request && typeof request === 'object' && (request as Record<string, unknown>).stream === true);

/** A streamed Chat Completions request, asking for the final usage chunk (sent uncompressed). */
function withStreamUsage(parsed: unknown): Buffer {
  const request = parsed as Record<string, unknown>;
  const streamOptions = typeof request.stream_options === 'object' ? request.stream_options : {};
  return Buffer.from(
    JSON.stringify({ ...request, stream_options: { ...streamOptions, include_usage: true } }),
  );
}
