import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A model API for tests that speaks the real wire formats — OpenAI Responses and Anthropic
 * Messages, streamed as server-sent events — and answers from a script instead of a model. Real
 * agent CLIs run against it (through airlock's proxy). Loopback only.
 *
 * Which step of the script answers a request is read from the request itself: the number of tool
 * results the agent has sent back so far. That keeps the server stateless across retries and side
 * requests (a CLI asking for a title, say), which get the step the conversation is at.
 */
export type ScriptStep =
  | { type: 'message'; text: string }
  /** A freeform (custom) tool call, e.g. Codex's `apply_patch` with the patch as input. */
  | { type: 'custom_tool_call'; name: string; input: string }
  /** A function tool call (OpenAI) or tool_use block (Anthropic) with JSON arguments. */
  | { type: 'tool_call'; name: string; arguments: Record<string, unknown> }
  /** An HTTP error answer in the vendor's error shape. */
  | { type: 'error'; status: number; message: string };

/** The steps, or a choice of steps by the request body (e.g. by a word in the prompt). */
export type Script = ScriptStep[] | ((body: string) => ScriptStep[]);

/** One request the server received, exactly as it arrived. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The script step that answered (-1 for side requests without tools, and refused ones). */
  step: number;
}

export interface ScriptedModelServer {
  /** Base URL to configure as a provider's upstream, e.g. `http://127.0.0.1:PORT`. */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Tokens reported per response, so usage and budgets have something to count. */
export const SCRIPTED_USAGE = { input: 120, output: 30 };

export async function startScriptedModelServer(script: {
  openai?: Script;
  anthropic?: Script;
}): Promise<ScriptedModelServer> {
  const requests: RecordedRequest[] = [];
  let responses = 0;
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = new URL(req.url ?? '/', 'http://model.invalid').pathname;
    const record: RecordedRequest = { method: req.method ?? '', path, headers: req.headers, body, step: -1 };
    requests.push(record);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(body) as Record<string, unknown>;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"not JSON"}}');
      return;
    }
    const id = ++responses;
    if (req.method === 'POST' && path === '/v1/responses' && script.openai) {
      const model = String(parsed.model ?? 'scripted');
      // Side requests without tools (titles, summaries) get a plain answer.
      if (!Array.isArray(parsed.tools) || parsed.tools.length === 0)
        return respondOpenAi(res, { type: 'message', text: 'Scripted answer.' }, id, model);
      const steps = typeof script.openai === 'function' ? script.openai(body) : script.openai;
      record.step = Math.min(openaiToolResults(parsed), steps.length - 1);
      const step = steps[record.step]!;
      if (step.type === 'error') return respondError(res, step, 'openai');
      return respondOpenAi(res, step, id, model);
    }
    if (req.method === 'POST' && path === '/v1/messages/count_tokens' && script.anthropic) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: SCRIPTED_USAGE.input }));
      return;
    }
    if (req.method === 'POST' && path === '/v1/messages' && script.anthropic) {
      const model = String(parsed.model ?? 'scripted');
      const stream = parsed.stream === true;
      if (!Array.isArray(parsed.tools) || parsed.tools.length === 0)
        return respondAnthropic(res, { type: 'message', text: 'Scripted answer.' }, id, model, stream);
      const steps = typeof script.anthropic === 'function' ? script.anthropic(body) : script.anthropic;
      record.step = Math.min(anthropicToolResults(parsed), steps.length - 1);
      const step = steps[record.step]!;
      if (step.type === 'error') return respondError(res, step, 'anthropic');
      return respondAnthropic(res, step, id, model, stream);
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `no script for ${req.method} ${path}` } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function openaiToolResults(body: Record<string, unknown>): number {
  const input = Array.isArray(body.input) ? (body.input as Array<{ type?: string }>) : [];
  return input.filter((i) => i.type === 'function_call_output' || i.type === 'custom_tool_call_output')
    .length;
}

function anthropicToolResults(body: Record<string, unknown>): number {
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ content?: unknown }>) : [];
  let n = 0;
  for (const m of messages) {
    if (Array.isArray(m.content))
      n += (m.content as Array<{ type?: string }>).filter((c) => c.type === 'tool_result').length;
  }
  return n;
}

function sse(res: ServerResponse, event: string, data: Record<string, unknown>): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`);
}

function respondError(
  res: ServerResponse,
  step: Extract<ScriptStep, { type: 'error' }>,
  vendor: 'openai' | 'anthropic',
): void {
  res.writeHead(step.status, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify(
      vendor === 'openai'
        ? { error: { message: step.message, type: 'invalid_request_error', code: null, param: null } }
        : { type: 'error', error: { type: 'invalid_request_error', message: step.message } },
    ),
  );
}

type AnswerStep = Exclude<ScriptStep, { type: 'error' }>;

function respondOpenAi(res: ServerResponse, step: AnswerStep, id: number, model: string): void {
  const item =
    step.type === 'message'
      ? {
          type: 'message',
          id: `msg_${id}`,
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: step.text, annotations: [] }],
        }
      : step.type === 'custom_tool_call'
        ? {
            type: 'custom_tool_call',
            id: `ctc_${id}`,
            call_id: `call_${id}`,
            name: step.name,
            input: step.input,
            status: 'completed',
          }
        : {
            type: 'function_call',
            id: `fc_${id}`,
            call_id: `call_${id}`,
            name: step.name,
            arguments: JSON.stringify(step.arguments),
            status: 'completed',
          };
  const response = {
    id: `resp_${id}`,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: 'in_progress',
    model,
    output: [] as unknown[],
  };
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let seq = 0;
  sse(res, 'response.created', { sequence_number: seq++, response });
  sse(res, 'response.in_progress', { sequence_number: seq++, response });
  const pending =
    item.type === 'message'
      ? { ...item, status: 'in_progress', content: [] }
      : { ...item, status: 'in_progress' };
  sse(res, 'response.output_item.added', { sequence_number: seq++, output_index: 0, item: pending });
  if (step.type === 'message') {
    sse(res, 'response.content_part.added', {
      sequence_number: seq++,
      item_id: item.id,
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    });
    sse(res, 'response.output_text.delta', {
      sequence_number: seq++,
      item_id: item.id,
      output_index: 0,
      content_index: 0,
      delta: step.text,
    });
    sse(res, 'response.output_text.done', {
      sequence_number: seq++,
      item_id: item.id,
      output_index: 0,
      content_index: 0,
      text: step.text,
    });
  } else if (step.type === 'custom_tool_call') {
    sse(res, 'response.custom_tool_call_input.delta', {
      sequence_number: seq++,
      item_id: item.id,
      output_index: 0,
      delta: step.input,
    });
  } else {
    sse(res, 'response.function_call_arguments.delta', {
      sequence_number: seq++,
      item_id: item.id,
      output_index: 0,
      delta: (item as { arguments: string }).arguments,
    });
  }
  sse(res, 'response.output_item.done', { sequence_number: seq++, output_index: 0, item });
  sse(res, 'response.completed', {
    sequence_number: seq++,
    response: {
      ...response,
      status: 'completed',
      output: [item],
      usage: {
        input_tokens: SCRIPTED_USAGE.input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: SCRIPTED_USAGE.output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: SCRIPTED_USAGE.input + SCRIPTED_USAGE.output,
      },
    },
  });
  res.end();
}

function respondAnthropic(
  res: ServerResponse,
  step: AnswerStep,
  id: number,
  model: string,
  stream: boolean,
): void {
  const block =
    step.type === 'message'
      ? { type: 'text', text: step.text }
      : {
          type: 'tool_use',
          id: `toolu_${String(id).padStart(4, '0')}`,
          name: step.name,
          input: step.type === 'tool_call' ? step.arguments : { input: step.input },
        };
  const stopReason = step.type === 'message' ? 'end_turn' : 'tool_use';
  const message = {
    id: `msg_${id}`,
    type: 'message',
    role: 'assistant',
    model,
    content: [] as unknown[],
    stop_reason: null as string | null,
    stop_sequence: null,
    usage: { input_tokens: SCRIPTED_USAGE.input, output_tokens: 1 },
  };
  if (!stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        ...message,
        content: [block],
        stop_reason: stopReason,
        usage: { input_tokens: SCRIPTED_USAGE.input, output_tokens: SCRIPTED_USAGE.output },
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  sse(res, 'message_start', { message });
  if (block.type === 'text') {
    sse(res, 'content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    sse(res, 'content_block_delta', { index: 0, delta: { type: 'text_delta', text: block.text } });
  } else {
    sse(res, 'content_block_start', { index: 0, content_block: { ...block, input: {} } });
    sse(res, 'content_block_delta', {
      index: 0,
      delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
    });
  }
  sse(res, 'content_block_stop', { index: 0 });
  sse(res, 'message_delta', {
    delta: { stop_reason: stopReason, stop_sequence: null },
    usage: { output_tokens: SCRIPTED_USAGE.output },
  });
  sse(res, 'message_stop', {});
  res.end();
}
