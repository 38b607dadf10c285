import { z } from 'zod';
import type { FeatureUse, ModelFeature } from './model-features.ts';

/**
 * Reading a model request for the fields that make the provider reach elsewhere. The schemas are
 * permissive: they type only the fields that can carry such a feature (content blocks and their
 * sources, tools, MCP servers, stored state) and let every other field pass untouched, so a CLI
 * that sends a new ordinary parameter keeps working. A body these fields cannot be read from is
 * refused whole: what airlock cannot read, it does not forward.
 */

/** An Anthropic content source: `base64`, `text` and `content` are inline; `url` and `file` are not. */
interface AnthropicSource {
  type: string;
  content?: string | AnthropicBlock[] | undefined;
}
/** An Anthropic content block, with the fields that can nest other blocks or point elsewhere. */
interface AnthropicBlock {
  type: string;
  name?: unknown;
  source?: string | AnthropicSource | undefined;
  content?: string | AnthropicBlock[] | Record<string, unknown> | null | undefined;
}
const AnthropicSource: z.ZodType<AnthropicSource> = z.lazy(() =>
  z.looseObject({ type: z.string(), content: z.union([z.string(), z.array(AnthropicBlock)]).optional() }),
);
const AnthropicBlock: z.ZodType<AnthropicBlock> = z.lazy(() =>
  z.looseObject({
    type: z.string(),
    name: z.unknown().optional(),
    // A search result's `source` is the string it cites, not something fetched.
    source: z.union([z.string(), AnthropicSource]).optional(),
    // Server-tool results carry an object (an error) where other blocks carry blocks.
    content: z.union([z.string(), z.array(AnthropicBlock), z.looseObject({}), z.null()]).optional(),
  }),
);
const AnthropicContent = z.union([z.string(), z.array(AnthropicBlock)]);
const Tool = z.looseObject({ type: z.string().optional() });

/** `POST /v1/messages` and `/v1/messages/count_tokens`. */
const AnthropicRequest = z.looseObject({
  messages: z.array(z.looseObject({ content: AnthropicContent })).optional(),
  system: AnthropicContent.optional(),
  tools: z.array(Tool).optional(),
  mcp_servers: z.array(z.unknown()).optional(),
  container: z.unknown().optional(),
});

/** An OpenAI content part, or an item's output: where images and files are referred to. */
const OpenAiPart = z.looseObject({
  type: z.string().optional(),
  image_url: z.union([z.string(), z.looseObject({ url: z.string() }), z.null()]).optional(),
  file_url: z.union([z.string(), z.null()]).optional(),
  file_id: z.union([z.string(), z.null()]).optional(),
  file: z.looseObject({ file_id: z.union([z.string(), z.null()]).optional() }).optional(),
});
type OpenAiPart = z.infer<typeof OpenAiPart>;
const OpenAiContent = z.union([z.string(), z.array(OpenAiPart), z.null()]);
const ResponsesItem = z.looseObject({
  type: z.string().optional(),
  content: OpenAiContent.optional(),
  output: z.union([z.string(), z.array(OpenAiPart), OpenAiPart, z.null()]).optional(),
});
type ResponsesItem = z.infer<typeof ResponsesItem>;

/** `POST /v1/responses`. */
const ResponsesRequest = z.looseObject({
  input: z.union([z.string(), z.array(ResponsesItem)]).optional(),
  instructions: z.union([z.string(), z.array(ResponsesItem), z.null()]).optional(),
  tools: z.array(Tool).optional(),
  prompt: z.unknown().optional(),
});

/** `POST /v1/chat/completions`. */
const ChatRequest = z.looseObject({
  messages: z.array(z.looseObject({ content: OpenAiContent.optional() })).optional(),
  tools: z.array(Tool).optional(),
  web_search_options: z.unknown().optional(),
});

/** A request body that cannot be read as the endpoint's request. */
export interface UnreadableRequest {
  error: string;
}

/**
 * Every use, in a model request body, of a feature that makes the provider reach something other
 * than the model. `endpoint` is the provider-relative path the proxy forwards.
 */
export function modelRequestFeatures(endpoint: string, body: unknown): FeatureUse[] | UnreadableRequest {
  if (endpoint === '/v1/messages' || endpoint === '/v1/messages/count_tokens') {
    return read(AnthropicRequest, body, anthropicFeatures);
  }
  if (endpoint === '/v1/responses') return read(ResponsesRequest, body, responsesFeatures);
  if (endpoint === '/v1/chat/completions') return read(ChatRequest, body, chatFeatures);
  return { error: `airlock does not know the request shape of ${endpoint}` };
}

function read<T>(
  schema: z.ZodType<T>,
  body: unknown,
  features: (request: T) => FeatureUse[],
): FeatureUse[] | UnreadableRequest {
  const parsed = schema.safeParse(body);
  if (parsed.success) return features(parsed.data);
  const issue = deepestIssue(parsed.error.issues[0]!);
  return { error: `\`${jsonPath(issue.path)}\`: ${issue.message}` };
}

/** The issue to report: inside a union that matched no branch, the one that got furthest in. */
function deepestIssue(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code !== 'invalid_union' || !issue.errors.length) return issue;
  const inner = issue.errors.flat().map(deepestIssue);
  const furthest = inner.reduce((a, b) => (b.path.length > a.path.length ? b : a));
  return { path: [...issue.path, ...furthest.path], message: furthest.message };
}

function jsonPath(path: readonly PropertyKey[]): string {
  return (
    path
      .map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`))
      .join('')
      .replace(/^\./, '') || '(body)'
  );
}

const use = (feature: ModelFeature | undefined, field: string, what: string): FeatureUse => ({
  feature,
  field,
  what,
});

function anthropicFeatures(request: z.infer<typeof AnthropicRequest>): FeatureUse[] {
  const found: FeatureUse[] = [];
  if (request.mcp_servers?.length) found.push(use('mcp', 'mcp_servers', 'MCP servers'));
  if (request.container !== undefined && request.container !== null) {
    found.push(use('code_execution', 'container', 'a code-execution container'));
  }
  request.tools?.forEach((tool, i) => {
    const feature = anthropicToolFeature(tool.type);
    if (feature !== 'none') found.push(use(feature, `tools[${i}]`, `tool type ${tool.type}`));
  });
  if (Array.isArray(request.system)) anthropicBlocks(request.system, 'system', found);
  request.messages?.forEach((message, i) => {
    if (Array.isArray(message.content)) anthropicBlocks(message.content, `messages[${i}].content`, found);
  });
  return found;
}

/** Tool types the client runs itself (or that only search the request's own tools): no feature. */
const ANTHROPIC_CLIENT_TOOL =
  /^(custom|(bash|text_editor|computer|memory)_\d{8}|tool_search_tool_(regex|bm25)(_\d{8})?)$/;

function anthropicToolFeature(type: string | undefined): ModelFeature | undefined | 'none' {
  if (type === undefined || ANTHROPIC_CLIENT_TOOL.test(type)) return 'none';
  if (type.startsWith('web_search_')) return 'web_search';
  if (type.startsWith('web_fetch_')) return 'web_fetch';
  if (type.startsWith('code_execution_')) return 'code_execution';
  if (type === 'mcp_toolset') return 'mcp';
  return undefined;
}

/** The feature of a server tool called by name in an earlier turn (`server_tool_use.name`). */
function serverToolFeature(name: string): ModelFeature | undefined | 'none' {
  if (name.startsWith('tool_search_tool')) return 'none';
  if (name === 'web_search') return 'web_search';
  if (name === 'web_fetch') return 'web_fetch';
  if (name.endsWith('code_execution')) return 'code_execution';
  return undefined;
}

/** Blocks that record a server tool's call or result, by type. */
const ANTHROPIC_SERVER_BLOCKS: Record<string, ModelFeature> = {
  web_search_tool_result: 'web_search',
  web_fetch_tool_result: 'web_fetch',
  code_execution_tool_result: 'code_execution',
  bash_code_execution_tool_result: 'code_execution',
  text_editor_code_execution_tool_result: 'code_execution',
  mcp_tool_use: 'mcp',
  mcp_tool_result: 'mcp',
  container_upload: 'files',
};

function anthropicBlocks(blocks: readonly AnthropicBlock[], at: string, found: FeatureUse[]): void {
  blocks.forEach((block, i) => {
    const field = `${at}[${i}]`;
    const server = ANTHROPIC_SERVER_BLOCKS[block.type];
    if (server) found.push(use(server, field, `a ${block.type} block`));
    if (block.type === 'server_tool_use') {
      const name = String(block.name);
      const feature = serverToolFeature(name);
      if (feature !== 'none') found.push(use(feature, field, `a server_tool_use of ${name}`));
    }
    if (typeof block.source === 'object') {
      const source = block.source;
      if (source.type === 'url') found.push(use('url_sources', `${field}.source`, 'source.type: url'));
      else if (source.type === 'file') found.push(use('files', `${field}.source`, 'source.type: file'));
      else if (!['base64', 'text', 'content'].includes(source.type)) {
        found.push(use(undefined, `${field}.source`, `source.type: ${source.type}`));
      }
      if (Array.isArray(source.content)) anthropicBlocks(source.content, `${field}.source.content`, found);
    }
    if (Array.isArray(block.content)) anthropicBlocks(block.content, `${field}.content`, found);
  });
}

/** Item types that record an OpenAI hosted tool's call, by type. */
const OPENAI_SERVER_ITEMS: Record<string, ModelFeature> = {
  web_search_call: 'web_search',
  file_search_call: 'file_search',
  code_interpreter_call: 'code_execution',
  image_generation_call: 'image_generation',
  mcp_call: 'mcp',
  mcp_list_tools: 'mcp',
  mcp_approval_request: 'mcp',
  mcp_approval_response: 'mcp',
};

/**
 * Tool types the client runs itself, and `tool_search`, which the provider runs over the tools the
 * request itself defines (deferred loading, as Codex sends it): none of them reaches anyone else.
 */
const OPENAI_CLIENT_TOOLS = new Set([
  'tool_search',
  'function',
  'custom',
  'local_shell',
  'shell',
  'apply_patch',
  'computer',
  'computer_use_preview',
]);

function openAiToolFeature(type: string | undefined): ModelFeature | undefined | 'none' {
  if (type === undefined || OPENAI_CLIENT_TOOLS.has(type)) return 'none';
  if (type.startsWith('web_search')) return 'web_search';
  if (type === 'file_search') return 'file_search';
  if (type === 'mcp') return 'mcp';
  if (type === 'code_interpreter') return 'code_execution';
  if (type === 'image_generation') return 'image_generation';
  return undefined;
}

function openAiTools(tools: ReadonlyArray<{ type?: string | undefined }> | undefined, found: FeatureUse[]) {
  tools?.forEach((tool, i) => {
    const feature = openAiToolFeature(tool.type);
    if (feature !== 'none') found.push(use(feature, `tools[${i}]`, `tool type ${tool.type}`));
  });
}

/** A URL the provider would download: anything but inline `data:`. */
const fetched = (url: string) => !/^\s*data:/i.test(url);

function openAiParts(parts: readonly OpenAiPart[], at: string, found: FeatureUse[]): void {
  parts.forEach((part, i) => {
    const field = `${at}[${i}]`;
    const image = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url;
    if (image !== undefined && fetched(image)) {
      found.push(use('url_sources', `${field}.image_url`, `image_url ${image.slice(0, 40)}`));
    }
    if (typeof part.file_url === 'string' && fetched(part.file_url)) {
      found.push(use('url_sources', `${field}.file_url`, `file_url ${part.file_url.slice(0, 40)}`));
    }
    if (typeof part.file_id === 'string') found.push(use('files', `${field}.file_id`, 'file_id'));
    if (typeof part.file?.file_id === 'string') found.push(use('files', `${field}.file.file_id`, 'file_id'));
  });
}

function responsesItems(items: readonly ResponsesItem[], at: string, found: FeatureUse[]): void {
  items.forEach((item, i) => {
    const field = `${at}[${i}]`;
    const server = item.type ? OPENAI_SERVER_ITEMS[item.type] : undefined;
    if (server) found.push(use(server, field, `a ${item.type} item`));
    if (Array.isArray(item.content)) openAiParts(item.content, `${field}.content`, found);
    if (Array.isArray(item.output)) openAiParts(item.output, `${field}.output`, found);
    else if (item.output && typeof item.output === 'object')
      openAiParts([item.output], `${field}.output`, found);
  });
}

function responsesFeatures(request: z.infer<typeof ResponsesRequest>): FeatureUse[] {
  const found: FeatureUse[] = [];
  if (request.prompt !== undefined && request.prompt !== null) {
    found.push(use('stored_prompt', 'prompt', 'a stored prompt'));
  }
  openAiTools(request.tools, found);
  if (Array.isArray(request.instructions)) responsesItems(request.instructions, 'instructions', found);
  if (Array.isArray(request.input)) responsesItems(request.input, 'input', found);
  return found;
}

function chatFeatures(request: z.infer<typeof ChatRequest>): FeatureUse[] {
  const found: FeatureUse[] = [];
  if (request.web_search_options !== undefined && request.web_search_options !== null) {
    found.push(use('web_search', 'web_search_options', 'web_search_options'));
  }
  openAiTools(request.tools, found);
  request.messages?.forEach((message, i) => {
    if (Array.isArray(message.content)) openAiParts(message.content, `messages[${i}].content`, found);
  });
  return found;
}
