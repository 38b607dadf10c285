import type { ModelFeature } from './model-features.ts';

/**
 * Anthropic betas (by name without their date) that change only how the model answers or how the
 * request is cached and counted: none makes the provider reach anything. What Claude Code sends
 * is among them.
 */
const HARMLESS_ANTHROPIC_BETAS = new Set([
  'claude-code',
  'interleaved-thinking',
  'fine-grained-tool-streaming',
  'context-management',
  'context-1m',
  'effort',
  'prompt-caching',
  'prompt-caching-scope',
  'extended-cache-ttl',
  'token-counting',
  'token-efficient-tools',
  'output-128k',
  'structured-outputs',
  'redact-thinking',
  // Tool search and tool examples work over the tools the request itself lists.
  'advanced-tool-use',
  'tool-search-tool',
  'tool-examples',
]);

/** Anthropic betas that enable a feature that reaches elsewhere: they pass only when it is allowed. */
const FEATURE_ANTHROPIC_BETAS: ReadonlyArray<[RegExp, ModelFeature]> = [
  [/^web-search$/, 'web_search'],
  [/^web-fetch$/, 'web_fetch'],
  [/^(code-execution|skills)$/, 'code_execution'],
  [/^mcp-(client|servers)$/, 'mcp'],
  [/^files-api$/, 'files'],
];

/** OpenAI beta opt-ins that change only the wire format. */
const HARMLESS_OPENAI_BETAS = new Set(['responses=experimental']);

/** A feature header after filtering: the value to send (if any) and the entries removed from it. */
export interface FilteredBetas {
  value: string | undefined;
  dropped: string[];
}

/**
 * Filters an `anthropic-beta` or `openai-beta` header to the allowlist. Entries that enable an
 * allowed feature pass too. Any other entry is dropped rather than refused, so a CLI that sends a
 * beta airlock does not know keeps working without it; the feature it would enable stays off.
 */
export function filterBetas(
  header: 'anthropic-beta' | 'openai-beta',
  value: string | string[] | undefined,
  allowed: ReadonlySet<string>,
): FilteredBetas {
  if (value === undefined) return { value: undefined, dropped: [] };
  const entries = (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  const kept: string[] = [];
  const dropped: string[] = [];
  for (const entry of entries) {
    (betaAllowed(header, entry, allowed) ? kept : dropped).push(entry);
  }
  return { value: kept.length ? kept.join(',') : undefined, dropped };
}

function betaAllowed(header: 'anthropic-beta' | 'openai-beta', entry: string, allowed: ReadonlySet<string>) {
  if (header === 'openai-beta') return HARMLESS_OPENAI_BETAS.has(entry.toLowerCase());
  const name = entry.toLowerCase().replace(/-(\d{4}-\d{2}-\d{2}|\d{8})$/, '');
  if (HARMLESS_ANTHROPIC_BETAS.has(name)) return true;
  const feature = FEATURE_ANTHROPIC_BETAS.find(([pattern]) => pattern.test(name))?.[1];
  return feature !== undefined && allowed.has(feature);
}
