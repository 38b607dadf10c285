/**
 * Whether a model name matches an operator's pattern, where `*` stands for any run of characters
 * (`claude-sonnet-*`); case-insensitive, like the providers' model names.
 */
export function modelNameMatches(name: string, pattern: string): boolean {
  const source = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${source}$`, 'i').test(name);
}

/**
 * Whether an operator's egress pattern covers a name a repository adds to `egress.allow`: `*`
 * covers every name; `*.example.com` covers names below example.com, and wildcards no wider than
 * itself (`*.cdn.example.com`, `*.example.com`); a plain name covers only itself.
 */
export function egressNameCovered(name: string, pattern: string): boolean {
  const entry = name.toLowerCase();
  const rule = pattern.toLowerCase();
  if (rule === '*') return true;
  if (!rule.startsWith('*.')) return entry === rule;
  const suffix = rule.slice(1); // ".example.com"
  if (entry.startsWith('*.')) return entry.slice(1).endsWith(suffix);
  // Like the proxy's matching: `*.example.com` does not cover example.com itself.
  return `.${entry}`.endsWith(suffix) && `.${entry}` !== suffix;
}
