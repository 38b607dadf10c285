import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the upstream received it: the exact bytes, and the headers. */
export interface ReceivedRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** What the upstream answers; defaults to a small JSON answer with usage. */
export type UpstreamAnswer = (
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
) => void | Promise<void>;

/** A model upstream for proxy tests that records every request byte for byte. Loopback only. */
export interface RecordingModelUpstream {
  url: string;
  received: ReceivedRequest[];
  /** Requests whose answer has not finished yet. */
  inFlight(): number;
  answer: UpstreamAnswer;
  close(): Promise<void>;
}

/** Starts a recording model upstream on 127.0.0.1. */
export async function startRecordingModelUpstream(): Promise<RecordingModelUpstream> {
  let open = 0;
  const upstream: RecordingModelUpstream = {
    url: '',
    received: [],
    inFlight: () => open,
    answer: (_req, res) => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ type: 'message', usage: { input_tokens: 1, output_tokens: 1 } }));
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer(async (req, res) => {
    open += 1;
    res.on('close', () => {
      open -= 1;
    });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    upstream.received.push({ path: req.url ?? '', headers: req.headers, body });
    await upstream.answer(req, res, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}
