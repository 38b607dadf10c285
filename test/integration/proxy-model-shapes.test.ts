import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import {
  type RecordingModelUpstream,
  startRecordingModelUpstream,
} from '../helpers/recording-model-upstream.ts';

// The model API as an egress channel: request shapes that make the provider fetch a URL or call a
// remote tool are refused before they reach the provider, unless the task may use that feature;
// every other shape reaches the provider byte for byte.

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let upstream: RecordingModelUpstream;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;

beforeEach(async () => {
  audit = new RecordingAudit();
  upstream = await startRecordingModelUpstream();
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await upstream.close();
});

async function start(modelFeatures?: readonly string[]): Promise<string> {
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {
      anthropic: { url: upstream.url, apiKey: 'sk-ant-test-key-0123456789' },
      openai: { url: upstream.url, apiKey: 'sk-openai-test-key-0123456789' },
    },
    ...(modelFeatures ? { modelFeatures } : {}),
    egressAllow: [],
    budgetTokens: 10_000_000,
    onBudgetExceeded: () => {},
    audit,
    log: memoryLogger().log,
  });
  return proxy.address;
}

const EXFIL = 'https://collector.example/upload?repo=acme/widgets';
const user = (content: unknown) => ({ role: 'user', content });
const anthropic = (extra: Record<string, unknown>) => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 1024,
  messages: [user('hello')],
  ...extra,
});
const responses = (extra: Record<string, unknown>) => ({ model: 'gpt-5', ...extra });

/** Forbidden shapes: [name, path, body, feature the refusal names]. */
const FORBIDDEN: Array<[string, string, unknown, string | null]> = [
  [
    'an Anthropic image from a URL',
    '/anthropic/v1/messages',
    anthropic({ messages: [user([{ type: 'image', source: { type: 'url', url: EXFIL } }])] }),
    'url_sources',
  ],
  [
    'an Anthropic document from a URL',
    '/anthropic/v1/messages',
    anthropic({ messages: [user([{ type: 'document', source: { type: 'url', url: EXFIL } }])] }),
    'url_sources',
  ],
  [
    'Anthropic mcp_servers',
    '/anthropic/v1/messages',
    anthropic({ mcp_servers: [{ type: 'url', url: EXFIL, name: 'collector' }] }),
    'mcp',
  ],
  [
    'the Anthropic web fetch tool',
    '/anthropic/v1/messages',
    anthropic({ tools: [{ type: 'web_fetch_20250910', name: 'web_fetch', max_uses: 5 }] }),
    'web_fetch',
  ],
  [
    'the Anthropic web search tool',
    '/anthropic/v1/messages',
    anthropic({ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }),
    'web_search',
  ],
  [
    'the Anthropic code execution tool',
    '/anthropic/v1/messages',
    anthropic({ tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }),
    'code_execution',
  ],
  [
    'an Anthropic URL image nested in a tool result',
    '/anthropic/v1/messages',
    anthropic({
      messages: [
        user([
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: [{ type: 'image', source: { type: 'url', url: EXFIL } }],
          },
        ]),
      ],
    }),
    'url_sources',
  ],
  [
    'an Anthropic URL image inside a content document',
    '/anthropic/v1/messages',
    anthropic({
      messages: [
        user([
          {
            type: 'document',
            source: { type: 'content', content: [{ type: 'image', source: { type: 'url', url: EXFIL } }] },
          },
        ]),
      ],
    }),
    'url_sources',
  ],
  [
    'an Anthropic file from the account',
    '/anthropic/v1/messages',
    anthropic({ messages: [user([{ type: 'document', source: { type: 'file', file_id: 'file_011' } }])] }),
    'files',
  ],
  [
    'an Anthropic URL image sent to count_tokens',
    '/anthropic/v1/messages/count_tokens',
    anthropic({ messages: [user([{ type: 'image', source: { type: 'url', url: EXFIL } }])] }),
    'url_sources',
  ],
  [
    'an Anthropic tool type airlock does not know',
    '/anthropic/v1/messages',
    anthropic({ tools: [{ type: 'teleport_20990101', name: 'teleport' }] }),
    null,
  ],
  [
    'an OpenAI input_image with an https URL',
    '/openai/v1/responses',
    responses({ input: [user([{ type: 'input_image', image_url: EXFIL }])] }),
    'url_sources',
  ],
  [
    'an OpenAI input_file with a file_url',
    '/openai/v1/responses',
    responses({ input: [user([{ type: 'input_file', file_url: EXFIL }])] }),
    'url_sources',
  ],
  [
    'an OpenAI mcp tool',
    '/openai/v1/responses',
    responses({
      input: 'hi',
      tools: [{ type: 'mcp', server_label: 'collector', server_url: EXFIL, require_approval: 'never' }],
    }),
    'mcp',
  ],
  [
    'the OpenAI web_search tool',
    '/openai/v1/responses',
    responses({ input: 'hi', tools: [{ type: 'web_search' }] }),
    'web_search',
  ],
  [
    'the OpenAI file_search tool',
    '/openai/v1/responses',
    responses({ input: 'hi', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }),
    'file_search',
  ],
  [
    'the OpenAI code interpreter',
    '/openai/v1/responses',
    responses({ input: 'hi', tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] }),
    'code_execution',
  ],
  [
    'an OpenAI URL image in a function call output',
    '/openai/v1/responses',
    responses({
      input: [
        {
          type: 'function_call_output',
          call_id: 'call_1',
          output: [{ type: 'input_image', image_url: EXFIL }],
        },
      ],
    }),
    'url_sources',
  ],
  [
    'a Chat Completions image_url with an http URL',
    '/openai/v1/chat/completions',
    {
      model: 'gpt-4o',
      messages: [user([{ type: 'image_url', image_url: { url: 'http://collector.example/x' } }])],
    },
    'url_sources',
  ],
  [
    'Chat Completions web_search_options',
    '/openai/v1/chat/completions',
    { model: 'gpt-4o-search-preview', web_search_options: {}, messages: [user('hi')] },
    'web_search',
  ],
];

describe('model request shapes through the task proxy', () => {
  it.each(FORBIDDEN)(
    'refuses %s before it reaches the provider, and audits it',
    async (_name, path, body, feature) => {
      const base = await start();
      const response = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(403);
      const text = await response.text();
      expect(text).toContain('airlock:');
      if (feature) expect(text).toContain(`\`${feature}\` under \`models.allow\``);
      else expect(text).toContain('not something airlock knows to be safe');
      expect(upstream.received).toEqual([]);
      expect(audit.events).toContainEqual({
        taskId: 't1',
        type: 'proxy.refused',
        data: expect.objectContaining({
          channel: 'model',
          feature,
          path: path.replace(/^\/[a-z]+/, ''),
          status: 403,
        }),
      });
    },
  );

  it('refuses a forbidden shape sent compressed, and a body it cannot read', async () => {
    const base = await start();
    const compressed = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(JSON.stringify(anthropic({ mcp_servers: [{ type: 'url', url: EXFIL, name: 'c' }] }))),
    });
    expect(compressed.status).toBe(403);
    for (const [encoding, body] of [
      [undefined, '{"messages": [ not json'],
      ['x-secret-codec', '{}'],
    ] as const) {
      const response = await fetch(`${base}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(encoding ? { 'content-encoding': encoding } : {}),
        },
        body,
      });
      expect([400, 415]).toContain(response.status);
    }
    const malformed = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      body: JSON.stringify(anthropic({ messages: [user([{ source: { type: 'url', url: EXFIL } }])] })),
    });
    expect(malformed.status).toBe(400);
    expect(await malformed.text()).toContain('messages[0].content');
    expect(upstream.received).toEqual([]);
  });

  it('forwards what the agent CLIs send byte for byte', async () => {
    const base = await start();
    const tiny =
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
    // Odd spacing and key order on purpose: what arrives must be what was sent, not a re-encoding.
    const claude = `{"model":"claude-sonnet-4-5",  "max_tokens":32000,"stream":true,
      "system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],
      "tools":[{"name":"Bash","description":"run","input_schema":{"type":"object","properties":{"source":{"type":"string"}}}},
               {"type":"bash_20250124","name":"bash"},{"type":"text_editor_20250728","name":"str_replace_based_edit_tool"}],
      "thinking":{"type":"enabled","budget_tokens":1024},"metadata":{"user_id":"u"},"some_future_field":{"x":1},
      "messages":[{"role":"user","content":[{"type":"text","text":"fetch https://example.com/x.png please"},
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"${tiny}"}},
        {"type":"document","source":{"type":"text","media_type":"text/plain","data":"notes"}},
        {"type":"search_result","source":"https://docs.example/page","title":"t","content":[{"type":"text","text":"x"}]}]},
       {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"source":{"type":"url","url":"${EXFIL}"}}}]},
       {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"ok"},
         {"type":"image","source":{"type":"base64","media_type":"image/png","data":"${tiny}"}}]}]}]}`;
    const codex = JSON.stringify(
      responses({
        instructions: 'You are Codex.',
        input: [
          user([
            { type: 'input_text', text: 'see image' },
            { type: 'input_image', image_url: `data:image/png;base64,${tiny}` },
            { type: 'input_file', filename: 'a.txt', file_data: 'data:text/plain;base64,aGk=' },
          ]),
          { type: 'function_call', call_id: 'call_1', name: 'shell', arguments: '{"command":["ls"]}' },
          { type: 'function_call_output', call_id: 'call_1', output: 'README.md' },
          { type: 'custom_tool_call_output', call_id: 'call_2', output: 'Done' },
        ],
        tools: [
          { type: 'function', name: 'shell', parameters: { type: 'object' } },
          {
            type: 'custom',
            name: 'apply_patch',
            format: { type: 'grammar', syntax: 'lark', definition: 'x' },
          },
          { type: 'local_shell' },
        ],
        tool_choice: 'auto',
        store: false,
        stream: true,
        include: ['reasoning.encrypted_content'],
      }),
    );
    const chat = JSON.stringify({
      model: 'gpt-4o',
      messages: [user([{ type: 'image_url', image_url: { url: `data:image/png;base64,${tiny}` } }])],
      tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
    });
    const gzipped = gzipSync(claude);
    const sent: Array<[string, Buffer, Record<string, string>]> = [
      ['/anthropic/v1/messages', Buffer.from(claude), {}],
      ['/anthropic/v1/messages/count_tokens', Buffer.from(claude), {}],
      ['/openai/v1/responses', Buffer.from(codex), {}],
      ['/openai/v1/chat/completions', Buffer.from(chat), {}],
      ['/anthropic/v1/messages', gzipped, { 'content-encoding': 'gzip' }],
    ];
    for (const [path, body, headers] of sent) {
      const response = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      expect(response.status, path).toBe(200);
      await response.arrayBuffer();
    }
    expect(upstream.received.map((r) => r.path)).toEqual(sent.map(([path]) => path.replace(/^\/[a-z]+/, '')));
    upstream.received.forEach((received, i) => {
      expect(received.body.equals(sent[i]![1]), sent[i]![0]).toBe(true);
    });
    expect(upstream.received[4]!.headers['content-encoding']).toBe('gzip');
    expect(audit.types('t1')).not.toContain('proxy.refused');
  });

  it('forwards a feature the task may use, byte for byte, and still refuses the others', async () => {
    const base = await start(['web_search', 'url_sources']);
    const allowed = [
      JSON.stringify(
        anthropic({ tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 3 }] }),
      ),
      JSON.stringify(
        anthropic({ messages: [user([{ type: 'image', source: { type: 'url', url: EXFIL } }])] }),
      ),
    ];
    for (const body of allowed) {
      const response = await fetch(`${base}/anthropic/v1/messages`, { method: 'POST', body });
      expect(response.status).toBe(200);
      await response.text();
    }
    expect(upstream.received.map((r) => r.body.toString())).toEqual(allowed);
    const fetchTool = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      body: JSON.stringify(anthropic({ tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] })),
    });
    expect(fetchTool.status).toBe(403);
    expect(upstream.received).toHaveLength(2);
  });

  it('passes only harmless betas, and a feature beta only when that feature is allowed', async () => {
    const base = await start(['web_fetch']);
    const response = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'anthropic-beta':
          'claude-code-20250219,interleaved-thinking-2025-05-14, mcp-client-2025-04-04,web-fetch-2025-09-10,files-api-2025-04-14,not-yet-known-2030-01-01',
        'openai-beta': 'assistants=v2',
      },
      body: JSON.stringify(anthropic({})),
    });
    expect(response.status).toBe(200);
    await response.text();
    expect(upstream.received[0]!.headers['anthropic-beta']).toBe(
      'claude-code-20250219,interleaved-thinking-2025-05-14,web-fetch-2025-09-10',
    );
    expect(upstream.received[0]!.headers['openai-beta']).toBeUndefined();
    expect(audit.events).toContainEqual(
      expect.objectContaining({
        type: 'proxy.model',
        data: expect.objectContaining({
          dropped_betas: [
            'mcp-client-2025-04-04',
            'files-api-2025-04-14',
            'not-yet-known-2030-01-01',
            'assistants=v2',
          ],
        }),
      }),
    );
  });

  it('refuses to start with a model feature it does not know', async () => {
    await expect(start(['web_serach'])).rejects.toThrow(/unknown model feature web_serach/);
  });
});
