// The agent's summary, its failure output and anything else the guest says are data: on GitHub they
// must render as the text they are, never as markdown that mentions people, links or closes issues,
// embeds images from other hosts, or forges lines airlock writes itself.

// Control characters other than tab and newline, and zero-width, bidirectional and tag characters
// that hide text from the person reading it.
const HIDDEN =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]|[\u{E0000}-\u{E007F}]/gu;
// Every ASCII character markdown (CommonMark, GitHub's extensions, math) gives a meaning to, bar
// the ordered-list dot handled on its own. Any ASCII punctuation may be backslash-escaped, so
// escaping these leaves only literal text.
const MARKUP = /[\\`*_[\]()<>#+\-!|~&$=]/g;
// GitHub finds mentions, issue references and bare URLs in the rendered text, after escapes are
// undone, so those are broken apart with a zero-width joiner instead.
const ZWJ = '\u200D';
const LINKED: Array<[RegExp, string]> = [
  [/@(?=[\p{L}\p{N}_-])/gu, `@${ZWJ}`], // @user, @org/team, user@host
  [/#(?=\p{N})/gu, `#${ZWJ}`], // #12, owner/repo#12, and with them `Closes #12`
  [/\b(gh)-(?=\d)/gi, `$1-${ZWJ}`], // GH-12
  [/:\/\//g, `:${ZWJ}//`], // https://host/..., issue URLs included
  [/\b(www)\./gi, `$1${ZWJ}.`], // www.host
];

/** Text shortened to at most `maxChars` characters (never splitting one), with `…` where it was cut. */
function clipText(text: string, maxChars: number): string {
  const chars = Array.from(text);
  return chars.length > maxChars ? `${chars.slice(0, maxChars).join('')}…` : text;
}

/**
 * Untrusted text as a block quote that renders as that text, line by line, at most `maxChars` of it:
 * every line, blank ones too, stays inside the quote.
 */
export function untrustedQuote(text: string, maxChars: number): string {
  return quoted(plain(text, maxChars));
}

/**
 * Untrusted text after a label airlock writes: on the label's line when it is one line, else as a
 * quote below it, so no line of it can pass for one of airlock's own.
 */
export function labelledUntrusted(label: string, text: string, maxChars: number): string {
  const clean = plain(text, maxChars).trim();
  return clean.includes('\n') ? `${label}\n\n${quoted(clean)}` : `${label} ${neutralised(clean)}`;
}

/**
 * Untrusted text as a fenced code block whose fence is longer than any run of backticks inside,
 * so nothing in it can close the block. GitHub links nothing inside code.
 */
export function untrustedCodeBlock(text: string, maxChars: number): string {
  const body = plain(text, maxChars);
  const fence = '`'.repeat(Math.max(3, longestBacktickRun(body) + 1));
  return [fence, body, fence].join('\n');
}

/** Untrusted text as an inline code span, delimited by more backticks than any run inside it. */
export function untrustedCodeSpan(text: string, maxChars: number): string {
  const body = oneLine(plain(text, maxChars));
  const run = longestBacktickRun(body);
  const ticks = '`'.repeat(run + 1);
  // Spaces keep a backtick at either end from joining the delimiter; GitHub strips one each side.
  return run ? `${ticks} ${body} ${ticks}` : `${ticks}${body}${ticks}`;
}

/**
 * Text with every hidden character made visible as `⟨U+XXXX⟩`: what a person approves must show
 * what the agent gets, and zero-width, bidirectional or tag characters can carry instructions no
 * reader would see (the other renderings drop them, which suits text that is only read).
 */
export function revealHidden(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(HIDDEN, (c) => {
    const code = c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `⟨U+${code}⟩`;
  });
}

function plain(text: string, maxChars: number): string {
  return clipText(text.replace(/\r\n?/g, '\n').replace(HIDDEN, ''), maxChars);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function quoted(text: string): string {
  return text
    .split('\n')
    .map(neutralised)
    .map((line) => (line ? `> ${line}` : '>'))
    .join('\n');
}

function neutralised(line: string): string {
  let out = line;
  // Before escaping: an escape between `GH` and `-12` would be gone by the time GitHub links.
  for (const [pattern, replacement] of LINKED) out = out.replace(pattern, replacement);
  out = out.replace(MARKUP, '\\$&').replace(/^(\s*\d+)\./, '$1\\.');
  // Leading spaces would make an indented code block, where the escapes show; no-break spaces keep
  // the indentation and mean nothing to markdown.
  return out.replace(/^[ \t]+/, (indent) =>
    indent.replace(/ /g, '\u00A0').replace(/\t/g, '\u00A0'.repeat(4)),
  );
}

function longestBacktickRun(text: string): number {
  return (text.match(/`+/g) ?? []).reduce((longest, run) => Math.max(longest, run.length), 0);
}
