import { describe, expect, it } from 'vitest';
import { filterBetas } from '../../src/proxy/model-beta-policy.ts';
import { createModelBudget } from '../../src/proxy/model-budget.ts';
import { requestEstimate } from '../../src/proxy/model-request-body.ts';
import { modelRequestFeatures } from '../../src/proxy/model-request-policy.ts';

describe('model request features', () => {
  it('names the feature and the field of each use, nested or not', () => {
    const uses = modelRequestFeatures('/v1/messages', {
      messages: [
        { role: 'user', content: 'plain text' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'x' },
            {
              type: 'tool_result',
              content: [{ type: 'image', source: { type: 'url', url: 'https://x.example' } }],
            },
          ],
        },
        { role: 'assistant', content: [{ type: 'server_tool_use', id: 's', name: 'web_fetch', input: {} }] },
      ],
      tools: [
        { name: 'Bash', input_schema: {} },
        { type: 'memory_20250818', name: 'memory' },
        { type: 'web_fetch_20250910' },
      ],
    });
    expect(uses).toEqual([
      { feature: 'web_fetch', field: 'tools[2]', what: 'tool type web_fetch_20250910' },
      { feature: 'url_sources', field: 'messages[1].content[1].content[0].source', what: 'source.type: url' },
      { feature: 'web_fetch', field: 'messages[2].content[0]', what: 'a server_tool_use of web_fetch' },
    ]);
  });

  it('passes the tools Codex sends, tool_search among them, and still names a web search', () => {
    const uses = modelRequestFeatures('/v1/responses', {
      model: 'gpt-5-codex',
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }],
      tools: [
        { type: 'function', name: 'shell', parameters: {} },
        { type: 'custom', name: 'apply_patch' },
        { type: 'tool_search' },
        { type: 'web_search' },
      ],
    });
    expect(uses).toEqual([{ feature: 'web_search', field: 'tools[3]', what: 'tool type web_search' }]);
  });

  it('reads a tool_use input as data, not as a content block', () => {
    expect(
      modelRequestFeatures('/v1/messages', {
        messages: [
          {
            role: 'assistant',
            content: [
              { type: 'tool_use', id: 't', name: 'x', input: { source: { type: 'url', url: 'https://x' } } },
            ],
          },
        ],
      }),
    ).toEqual([]);
  });

  it('treats data: URLs as inline and anything else as fetched', () => {
    const input = (image_url: string) => ({
      input: [{ role: 'user', content: [{ type: 'input_image', image_url }] }],
    });
    expect(modelRequestFeatures('/v1/responses', input('data:image/png;base64,AAAA'))).toEqual([]);
    for (const url of ['https://x.example/a.png', 'HTTP://x', 'ftp://x', ' //x']) {
      expect(modelRequestFeatures('/v1/responses', input(url))).toMatchObject([{ feature: 'url_sources' }]);
    }
  });

  it('refuses a body whose checked fields have the wrong shape, naming the field', () => {
    expect(modelRequestFeatures('/v1/messages', { messages: [{ content: [{ text: 'no type' }] }] })).toEqual({
      error: expect.stringContaining('`messages[0].content[0].type`'),
    });
    expect(modelRequestFeatures('/v1/responses', { tools: 'web_search' })).toHaveProperty('error');
  });
});

describe('beta headers', () => {
  it('keeps harmless betas whatever their date form, and feature betas only when allowed', () => {
    const header =
      'claude-code-20250219, prompt-caching-scope-2026-01-05,web-search-2025-03-05,skills-2025-10-02,x-1';
    expect(filterBetas('anthropic-beta', header, new Set())).toEqual({
      value: 'claude-code-20250219,prompt-caching-scope-2026-01-05',
      dropped: ['web-search-2025-03-05', 'skills-2025-10-02', 'x-1'],
    });
    expect(filterBetas('anthropic-beta', header, new Set(['web_search'])).value).toBe(
      'claude-code-20250219,prompt-caching-scope-2026-01-05,web-search-2025-03-05',
    );
    expect(filterBetas('anthropic-beta', undefined, new Set())).toEqual({ value: undefined, dropped: [] });
    expect(filterBetas('openai-beta', 'responses=experimental', new Set()).value).toBe(
      'responses=experimental',
    );
  });
});

describe('model budget', () => {
  it('lets a lone request through on any estimate while budget is left, and holds others back', async () => {
    const exceeded: number[] = [];
    const budget = createModelBudget({
      budgetTokens: 100,
      maxInFlight: 8,
      onExceeded: (u) => exceeded.push(u.inputTokens + u.outputTokens),
    });
    const first = await budget.reserve(500);
    expect(first).toBeDefined();
    let second: (() => void) | undefined | 'waiting' = 'waiting';
    const pending = budget.reserve(60).then((r) => {
      second = r;
    });
    await Promise.resolve();
    expect(second).toBe('waiting');
    budget.add({ inputTokens: 30, outputTokens: 10 });
    first!();
    await pending;
    expect(second).toBeTypeOf('function');
    budget.add({ inputTokens: 0, outputTokens: 70 });
    expect(exceeded).toEqual([110]);
    expect(await budget.reserve(1)).toBeUndefined();
  });

  it('hands slots over in order and never has more than the cap out', async () => {
    const budget = createModelBudget({ budgetTokens: 1, maxInFlight: 2, onExceeded: () => {} });
    const a = await budget.slot();
    await budget.slot();
    const order: string[] = [];
    const c = budget.slot().then((release) => {
      order.push('c');
      return release;
    });
    void budget.slot().then(() => order.push('d'));
    await Promise.resolve();
    expect(order).toEqual([]);
    a();
    (await c)();
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual(['c', 'd']);
  });

  it('estimates from the body size and the output cap', () => {
    expect(requestEstimate(400, { max_tokens: 1000 })).toEqual({ input: 100, output: 1000 });
    expect(requestEstimate(401, { max_output_tokens: 50 })).toEqual({ input: 101, output: 50 });
    expect(requestEstimate(4, {})).toEqual({ input: 1, output: 4096 });
  });
});
