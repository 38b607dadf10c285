/**
 * Model API features that make the provider reach something other than the model: fetch a URL,
 * call a remote tool server, run code with network access, or read what is stored in the account.
 * Each is refused by the model proxy unless a repository asks for it by name (`models.allow`) and
 * the operator permits it.
 */
export const MODEL_FEATURES = {
  url_sources:
    'images, documents and files given by an http(s) URL, which the provider downloads (Anthropic `source.type: url`, OpenAI `image_url` / `file_url`)',
  files: 'files stored in the provider account, referred to by id (`file_id`, `source.type: file`)',
  mcp: 'remote MCP servers the provider connects to (Anthropic `mcp_servers`, OpenAI tools of type `mcp`)',
  web_search:
    'the provider searches the web (Anthropic `web_search_*`, OpenAI `web_search*`, `web_search_options`)',
  web_fetch: 'the provider fetches web pages (Anthropic `web_fetch_*`)',
  code_execution:
    'the provider runs code in its own container (Anthropic `code_execution_*`, `container`; OpenAI `code_interpreter`)',
  file_search: "the provider searches the account's vector stores (OpenAI `file_search`)",
  image_generation: 'the provider generates images (OpenAI `image_generation`), which can take images by URL',
  stored_prompt: 'a prompt template stored in the account, with its own tools (OpenAI `prompt`)',
} as const;

/** A feature name, as written in `models.allow`. */
export type ModelFeature = keyof typeof MODEL_FEATURES;

/** Every feature name, for the repository config's enum. */
export const MODEL_FEATURE_NAMES = Object.keys(MODEL_FEATURES) as [ModelFeature, ...ModelFeature[]];

/** One use of a feature in a request: which feature, and where (a JSON path, or a header). */
export interface FeatureUse {
  /** The feature, or undefined when the field is one airlock does not know and cannot allow. */
  feature: ModelFeature | undefined;
  /** Where it is: `messages[0].content[1].source`, `tools[2]`, `header anthropic-beta`. */
  field: string;
  /** What was found, e.g. `source.type: url` or `tool type web_fetch_20250910`. */
  what: string;
}
