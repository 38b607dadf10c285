import type { ModelUpstreams } from '../proxy/model-proxy.ts';
import type { AppConfig } from './app-config.ts';

/** The model APIs the proxy may forward to: those with a key configured. */
export function modelUpstreams(models: AppConfig['models']): ModelUpstreams {
  return {
    ...(models.anthropicApiKey
      ? { anthropic: { url: models.anthropicUpstreamUrl, apiKey: models.anthropicApiKey } }
      : {}),
    ...(models.openaiApiKey
      ? { openai: { url: models.openaiUpstreamUrl, apiKey: models.openaiApiKey } }
      : {}),
  };
}
