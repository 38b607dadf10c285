import type { IncomingMessage } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync, zstdDecompressSync } from 'node:zlib';

/** Largest model request body read (the providers' own limit is 32 MB). */
export const MAX_MODEL_REQUEST_BYTES = 32 * 1024 * 1024;

/** Output tokens reserved for a request that sets no cap of its own. */
const DEFAULT_OUTPUT_ESTIMATE = 4096;

/** A request body that cannot be inspected, with the status to answer. */
export class UnreadableBody extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Reads a whole request body, up to {@link MAX_MODEL_REQUEST_BYTES}. */
export async function readRequestBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_MODEL_REQUEST_BYTES) {
      throw new UnreadableBody(413, `the request body is over ${MAX_MODEL_REQUEST_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

const DECODERS: Record<string, (raw: Buffer, options: { maxOutputLength: number }) => Buffer> = {
  gzip: gunzipSync,
  'x-gzip': gunzipSync,
  deflate: inflateSync,
  br: brotliDecompressSync,
  zstd: zstdDecompressSync,
};

/**
 * The JSON a request body carries, decoded as the provider would decode it (a compressed body is
 * inspected decompressed, and forwarded as it came).
 */
export function requestJson(raw: Buffer, contentEncoding: string | undefined): unknown {
  const encoding = (contentEncoding ?? 'identity').trim().toLowerCase();
  let text: Buffer = raw;
  if (encoding !== 'identity' && encoding !== '') {
    const decode = DECODERS[encoding];
    if (!decode) throw new UnreadableBody(415, `content-encoding ${encoding} is not supported`);
    try {
      text = decode(raw, { maxOutputLength: MAX_MODEL_REQUEST_BYTES });
    } catch (cause) {
      throw new UnreadableBody(400, `the ${encoding} body cannot be decoded (${String(cause)})`);
    }
  }
  try {
    return JSON.parse(text.toString('utf8'));
  } catch {
    throw new UnreadableBody(400, 'the request body is not JSON');
  }
}

/**
 * What a request may cost, reserved before it is sent: its input estimated from its size (about
 * four bytes a token, more for images sent inline) plus its output cap.
 */
export function requestEstimate(rawBytes: number, body: unknown): { input: number; output: number } {
  const fields = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  const cap = [fields.max_tokens, fields.max_output_tokens, fields.max_completion_tokens].find(
    (value): value is number => typeof value === 'number' && Number.isFinite(value) && value > 0,
  );
  return { input: Math.ceil(rawBytes / 4), output: cap ?? DEFAULT_OUTPUT_ESTIMATE };
}
