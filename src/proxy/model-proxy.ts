import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AuditSink } from '../audit-sink.ts';
import { ProxyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { filterBetas } from './model-beta-policy.ts';
import { createModelBudget } from './model-budget.ts';
import { type FeatureUse, MODEL_FEATURES } from './model-features.ts';
import { answerModelError, forwardModelCall, type ModelForwardContext } from './model-forward.ts';
import { readRequestBody, requestEstimate, requestJson, UnreadableBody } from './model-request-body.ts';
import { modelRequestFeatures } from './model-request-policy.ts';
import { HOP_BY_HOP, type UpstreamAgents } from './upstream-request.ts';
import type { TokenUsage } from './usage-meter.ts';

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

/** Model requests one task may have in flight; more wait their turn. */
export const MAX_MODEL_REQUESTS_IN_FLIGHT = 8;

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
    answerModelError(res, provider, status, message);
  };
  const forwardContext: ModelForwardContext = {
    taskId: options.taskId,
    agents: options.agents,
    audit: options.audit,
    log: options.log,
    addUsage: (delta) => budget.add(delta),
    refuse: (res, provider, status, message, path) => refuse(res, provider, status, message, path),
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
        await forwardModelCall(forwardContext, res, {
          provider,
          path,
          target,
          headers,
          body,
          estimate,
          dropped,
          model: requestModel(json),
        });
      } finally {
        releaseReservation?.();
        releaseSlot();
      }
    },
  };

  function featureRefusal(refused: FeatureUse[]): string {
    const first = refused[0]!;
    if (!first.feature) {
      return `airlock: the request's ${first.field} (${first.what}) is not something airlock knows to be safe, so it is refused: the model API may not reach anything beyond the task's allowlist`;
    }
    const names = [...new Set(refused.map((use) => use.feature))];
    return `airlock: the request uses ${names.join(', ')} (${first.field}: ${first.what}), which makes the provider reach beyond the task's allowlist; to allow it, the repository lists ${names.map((n) => `\`${n}\``).join(', ')} under \`models.allow\` in .github/airlock.yml and the operator permits it`;
  }
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

/** The model a request body names, as forwarded (the provider bills by it); at most 100 characters. */
function requestModel(json: unknown): string | undefined {
  const model = (json as { model?: unknown } | null)?.model;
  return typeof model === 'string' && model.length > 0 ? model.slice(0, 100) : undefined;
}
