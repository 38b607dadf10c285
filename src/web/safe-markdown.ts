import { html, type SafeHtml } from './html.ts';

/**
 * Renders untrusted markdown (an agent's summary) with a small, closed set of constructs:
 * paragraphs, line breaks, headings (as bold lines), bullet and numbered lists, fenced code,
 * inline code, bold and italics. Every character of the input is escaped; no raw HTML, no links,
 * no images, and `@name` stays plain text (nothing here notifies anyone).
 */
export function untrustedMarkdown(text: string): SafeHtml {
  const blocks: SafeHtml[] = [];
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const fence = /^\s*(```|~~~)/.exec(line);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i]!.trim().startsWith(fence[1]!)) body.push(lines[i++]!);
      i++;
      blocks.push(html`<pre><code>${body.join('\n')}</code></pre>`);
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const list = /^\s*([-*+]|\d+[.)])\s+/.exec(line);
    if (list) {
      const ordered = /\d/.test(list[1]!);
      const items: SafeHtml[] = [];
      while (i < lines.length) {
        const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(lines[i]!);
        if (!item || /\d/.test(item[1]!) !== ordered) break;
        items.push(html`<li>${inline(item[2]!)}</li>`);
        i++;
      }
      blocks.push(ordered ? html`<ol>${items}</ol>` : html`<ul>${items}</ul>`);
      continue;
    }
    const heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
    if (heading) {
      blocks.push(html`<p><strong>${inline(heading[1]!)}</strong></p>`);
      i++;
      continue;
    }
    const paragraph: string[] = [];
    while (
      i < lines.length &&
      lines[i]!.trim() &&
      !/^\s*(```|~~~|[-*+]\s|\d+[.)]\s|#{1,6}\s)/.test(lines[i]!)
    ) {
      paragraph.push(lines[i++]!);
    }
    blocks.push(html`<p>${paragraph.map((l, n) => (n === 0 ? inline(l) : html`<br>${inline(l)}`))}</p>`);
  }
  return html`${blocks}`;
}

/** Inline code, bold and italics, over escaped text. */
function inline(text: string): SafeHtml {
  const parts: SafeHtml[] = [];
  const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|__([^_]+)__|(?<![\w*])\*([^*\s][^*]*)\*(?!\w)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parts.push(html`${text.slice(last, match.index)}`);
    if (match[1] !== undefined) parts.push(html`<code>${match[1]}</code>`);
    else if (match[2] !== undefined || match[3] !== undefined)
      parts.push(html`<strong>${match[2] ?? match[3]}</strong>`);
    else parts.push(html`<em>${match[4]}</em>`);
    last = match.index + match[0].length;
  }
  parts.push(html`${text.slice(last)}`);
  return html`${parts}`;
}
