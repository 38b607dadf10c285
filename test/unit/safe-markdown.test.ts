import { expect, it } from 'vitest';
import { untrustedMarkdown } from '../../src/web/safe-markdown.ts';

const render = (text: string) => untrustedMarkdown(text).value;

it('renders paragraphs, lists, code and emphasis, and escapes everything else', () => {
  expect(render('Fixed `a.txt`.\nSecond line.\n\n1. one\n2. **two**\n\n```\n<b>x</b>\n```')).toBe(
    '<p>Fixed <code>a.txt</code>.<br>Second line.</p><ol><li>one</li><li><strong>two</strong></li></ol><pre><code>&lt;b&gt;x&lt;/b&gt;</code></pre>',
  );
  expect(render('# Title\n- *it* and <img src=x onerror=alert(1)>')).toBe(
    '<p><strong>Title</strong></p><ul><li><em>it</em> and &lt;img src=x onerror=alert(1)&gt;</li></ul>',
  );
});

it('makes no links and no mentions', () => {
  const out = render('[click](javascript:alert(1)) https://evil.example @octocat');
  expect(out).toBe('<p>[click](javascript:alert(1)) https://evil.example @octocat</p>');
  expect(out).not.toContain('<a');
});
