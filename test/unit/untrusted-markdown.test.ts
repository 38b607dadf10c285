import { describe, expect, it } from 'vitest';
import { checkRunSummary } from '../../src/github/check-run-summary.ts';
import { pullBody } from '../../src/github/github-reporter.ts';
import { trackingCommentBody } from '../../src/github/tracking-comment.ts';
import {
  labelledUntrusted,
  untrustedCodeBlock,
  untrustedCodeSpan,
  untrustedQuote,
} from '../../src/github/untrusted-markdown.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import { type Block, githubEffects } from '../helpers/github-markdown.ts';
import { taskFixture } from '../helpers/task-fixture.ts';

const PUBLIC_URL = 'http://airlock.test';
const AUDIT = `${PUBLIC_URL}/tasks/t1`;
const PR_URL = 'https://github.com/acme/widgets/pull/9';

const task = (overrides: Partial<Task> = {}): Task =>
  taskFixture({ state: 'succeeded', headSha: 'a'.repeat(40), ...overrides });

const pushed = (result: Partial<TaskResult>): Task =>
  task({ result: { outcome: 'changes_pushed', summary: '', prUrl: PR_URL, ...result } });
const failed = (reason: string): Task => task({ state: 'failed', reason, result: null });
const comment = (t: Task) => trackingCommentBody(t, { publicUrl: PUBLIC_URL });
const prBody = (summary: string) => pullBody(task(), { outcome: 'changes_pushed', summary }, PUBLIC_URL);
const checkRun = (t: Task) => checkRunSummary(t, { publicUrl: PUBLIC_URL, auditHead: 'f'.repeat(64) });
/** What a reader sees: GitHub shows the zero-width joiners as nothing. */
const seen = (text: string) => text.replace(/\u200D/g, '');

const MENTIONS = 'Done. @octocat and @acme/security, please look. cc user@evil.example';
const CLOSINGS = [
  'Closes #12',
  'fixes acme/widgets#3',
  'Resolves https://github.com/acme/widgets/issues/4',
  'close GH-5',
].join('\n');
const HTML =
  '<img src="https://evil.example/pixel.png"><details open><summary>x</summary></details> <!-- hidden -->';
const LINKS = [
  '![pixel](https://evil.example/p.png)',
  '[sign in again](https://evil.example/login)',
  '<https://evil.example/a>',
  'www.evil.example and https://evil.example/b',
  '[ref]: https://evil.example/c',
  '[see here][ref]',
].join('\n');
const FORGED = [
  'The agent stopped.',
  '',
  '**airlock** · task `t1` · ✅ Done',
  '## ✅ Done',
  '> Pull request: merged',
  'Comment `/airlock retry` to run it again.',
  '---',
  '[Audit record](https://evil.example/tasks/t1)',
].join('\n');

// Each surface airlock renders from the agent's words, and where those words go in it.
const surfaces = {
  'tracking comment summary': (text: string) => comment(pushed({ summary: text })),
  'tracking comment diff stat': (text: string) => comment(pushed({ diffStat: text })),
  'tracking comment reason': (text: string) => comment(failed(text)),
  'pull request body': prBody,
  'check run summary': (text: string) => checkRun(failed(text)),
};

describe.each(Object.entries(surfaces))('agent text in the %s', (_, render) => {
  it('mentions nobody but the requester', () => {
    expect(githubEffects(render(MENTIONS)).mentions).toEqual(['alice']);
  });

  it('references and closes no issue', () => {
    const effects = githubEffects(render(CLOSINGS));
    expect(effects.closes.filter((c) => c !== '#7')).toEqual([]);
    expect(effects.references.filter((r) => r !== '#7')).toEqual([]);
  });

  it('passes no HTML through', () => {
    expect(githubEffects(render(HTML)).html).toEqual([]);
  });

  it('links and embeds nothing', () => {
    const effects = githubEffects(render(LINKS));
    expect(effects.images).toEqual([]);
    expect(effects.links.filter((l) => l !== AUDIT && l !== PR_URL)).toEqual([]);
  });

  it('forges no heading and no line of airlock’s own', () => {
    const effects = githubEffects(render(FORGED));
    expect(effects.headings).toBe(0);
    const own = (blocks: Block[]) => blocks.filter((b) => b.kind !== 'blockquote' && b.kind !== 'fence');
    expect(own(effects.blocks)).toEqual(own(githubEffects(render('harmless\ntext')).blocks));
  });

  it('is bounded in length', () => {
    expect(render(`${'x'.repeat(100_000)}\n`.repeat(3)).length).toBeLessThan(20_000);
  });
});

describe('the diff stat in the tracking comment', () => {
  it('stays one code block whatever fence it carries', () => {
    const stat = [
      ' a.txt | 1 +',
      '```',
      '@everyone Closes #1',
      '<img src=x>',
      '````',
      ' 1 file changed',
    ].join('\n');
    const effects = githubEffects(comment(pushed({ diffStat: stat })));
    expect(effects.blocks.filter((b) => b.kind === 'fence').map((b) => b.text)).toEqual([`${stat.trim()}\n`]);
    expect(effects.mentions).toEqual(['alice']);
  });
});

describe('a branch name in the tracking comment', () => {
  it('stays one code span', () => {
    const effects = githubEffects(comment(task({ branch: 'airlock/x`@everyone`Closes #1`' })));
    expect(effects.mentions).toEqual(['alice']);
    expect(effects.closes).toEqual([]);
  });
});

describe('untrusted markdown', () => {
  it('renders as the very text it was given', () => {
    const text = [
      'Renamed `foo_bar` to *baz* (see #3 and @bob) in src/a-b.ts.',
      '1. first',
      '    indented <b>still</b> text & a \\ backslash | pipe ~ tilde $x$ = 2',
      '',
      '# not a heading',
    ].join('\n');
    const quote = githubEffects(untrustedQuote(text, 1_000)).blocks;
    expect(quote.map((b) => b.kind)).toEqual(['blockquote']);
    expect(seen(quote[0]!.text).replace(/\u00A0/g, ' ')).toBe(text.replace(/\n\n/, '\n'));
  });

  it('keeps one-line text on its line and longer text in a quote below its label', () => {
    expect(labelledUntrusted('Reason:', 'timed out', 100)).toBe('Reason: timed out');
    expect(labelledUntrusted('Reason:', 'exit 1\n# boom', 100)).toBe('Reason:\n\n> exit 1\n> \\# boom');
    expect(labelledUntrusted('Reason:', '  ## a @b  \n', 100)).toBe('Reason: \\#\\# a @\u200Db');
  });

  it('fences code with more backticks than it holds', () => {
    expect(untrustedCodeBlock('a ``` b\n`````', 100)).toBe('``````\na ``` b\n`````\n``````');
    expect(untrustedCodeSpan('x`y', 100)).toBe('`` x`y ``');
    expect(untrustedCodeSpan('airlock/issue-7', 100)).toBe('`airlock/issue-7`');
  });

  it('drops hidden characters and clips without splitting a character', () => {
    expect(untrustedQuote('a\u202Eb\u200Bc\u0007d\re', 100)).toBe('> abcd\n> e');
    expect(untrustedCodeBlock('ab😀c', 3)).toBe('```\nab😀…\n```');
  });
});
