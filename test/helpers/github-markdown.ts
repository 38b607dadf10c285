import MarkdownIt, { type Token } from 'markdown-it';

// A CommonMark parser with raw HTML and GitHub's autolinks (scheme URLs, `www.` and e-mail
// addresses, not bare domains), then GitHub's own pass over the rendered text: mentions, issue
// references and closing keywords, which it finds outside code and links, after escapes are undone.
const md = new MarkdownIt({ html: true, linkify: true });
md.linkify.set({ fuzzyLink: false });

const MENTION = /(?:^|[^\w`])@([a-z0-9][a-z0-9-]*(?:\/[a-z0-9][\w-]*)?)/gi;
const REFERENCE = /(?:^|[^\w/])((?:[\w.-]+\/[\w.-]+)?#\d+|GH-\d+)\b/gi;
const CLOSING =
  /\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s+((?:[\w.-]+\/[\w.-]+)?#\d+|https?:\/\/\S+\/(?:issues|pull)\/\d+)/gi;

/** One top-level block of a rendered document, with its visible text. */
export interface Block {
  kind: string;
  text: string;
}

/** What GitHub would do with a markdown document: whom it notifies, what it links and closes. */
export interface GitHubEffects {
  mentions: string[];
  references: string[];
  closes: string[];
  links: string[];
  images: string[];
  html: string[];
  /** Headings at any depth, quotes included. */
  headings: number;
  blocks: Block[];
}

/** Reads markdown the way GitHub renders and post-processes a comment or PR body. */
export function githubEffects(markdown: string): GitHubEffects {
  const effects: GitHubEffects = {
    mentions: [],
    references: [],
    closes: [],
    links: [],
    images: [],
    html: [],
    headings: 0,
    blocks: [],
  };
  let depth = 0;
  let open: Block | undefined;
  for (const token of md.parse(markdown, {})) {
    if (token.nesting === 1) {
      if (token.type === 'heading_open') effects.headings++;
      if (depth === 0) open = { kind: token.type.replace(/_open$/, ''), text: '' };
      depth++;
      continue;
    }
    if (token.nesting === -1) {
      depth--;
      if (depth === 0 && open) effects.blocks.push({ ...open, text: open.text.trim() });
      continue;
    }
    let text = '';
    if (token.type === 'inline') text = inlineText(token.children ?? [], effects);
    else if (token.type === 'html_block') effects.html.push(token.content);
    else if (token.type === 'fence' || token.type === 'code_block') text = token.content;
    if (depth === 0) effects.blocks.push({ kind: token.type, text: text || token.content });
    else if (open) open.text += `${text}\n`;
  }
  return effects;
}

function inlineText(children: Token[], effects: GitHubEffects): string {
  let visible = '';
  let linked = '';
  let inLink = false;
  const scan = () => {
    for (const m of linked.matchAll(MENTION)) effects.mentions.push(m[1]!);
    for (const m of linked.matchAll(REFERENCE)) effects.references.push(m[1]!);
    for (const m of linked.matchAll(CLOSING)) effects.closes.push(m[1]!);
    linked = '';
  };
  for (const child of children) {
    if (child.type === 'link_open') {
      effects.links.push(String(child.attrGet('href') ?? ''));
      scan();
      inLink = true;
    } else if (child.type === 'link_close') inLink = false;
    else if (child.type === 'image') effects.images.push(String(child.attrGet('src') ?? ''));
    else if (child.type === 'html_inline') effects.html.push(child.content);
    else if (child.type === 'text') {
      visible += child.content;
      // GitHub links nothing inside a link or code.
      if (!inLink) linked += child.content;
    } else if (child.type === 'softbreak' || child.type === 'hardbreak') {
      visible += '\n';
      linked += '\n';
    } else if (child.type === 'code_inline') {
      visible += child.content;
      scan();
    }
  }
  scan();
  return visible;
}
