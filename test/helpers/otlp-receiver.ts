import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** An attribute value as OTLP carries it (arrays and maps are not used by airlock's spans). */
export type AttributeValue = string | number | boolean | undefined;

/** One span as an OTLP receiver decodes it from the protobuf the exporter sent. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttributeValue>;
  links: Array<{ traceId: string; spanId: string; attributes: Record<string, AttributeValue> }>;
  status: { code: number; message: string };
  /** The attributes of the process that sent it (service.name, airlock.role, ...). */
  resource: Record<string, AttributeValue>;
}

/** A loopback OTLP/HTTP trace receiver: what an OpenTelemetry Collector is to airlock. */
export interface OtlpReceiver {
  /** The base URL to set as OTEL_EXPORTER_OTLP_ENDPOINT (traces go to `/v1/traces`). */
  endpoint: string;
  spans: ReceivedSpan[];
  /** The headers of every export request received. */
  requests: IncomingHttpHeaders[];
  /** Every export's body as sent (uncompressed): all that left the process. */
  bodies: Buffer[];
  close(): Promise<void>;
}

/**
 * Starts a receiver on 127.0.0.1 that accepts OTLP/HTTP protobuf exports on /v1/traces, decodes
 * each ExportTraceServiceRequest from the wire format (opentelemetry-proto's trace.proto field
 * numbers) and keeps the spans. Anything else gets a 404 or 415, as a collector answers.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: IncomingHttpHeaders[] = [];
  const bodies: Buffer[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') return void res.writeHead(404).end();
      if (req.headers['content-type'] !== 'application/x-protobuf') return void res.writeHead(415).end();
      requests.push(req.headers);
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      bodies.push(body);
      spans.push(...decodeExportRequest(body));
      // An empty ExportTraceServiceResponse: everything accepted.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    requests,
    bodies,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The spans of one trace, by name: each name's spans in the order they were received. */
export function spansOfTrace(spans: readonly ReceivedSpan[], traceId: string): Map<string, ReceivedSpan[]> {
  const byName = new Map<string, ReceivedSpan[]>();
  for (const span of spans.filter((s) => s.traceId === traceId)) {
    byName.set(span.name, [...(byName.get(span.name) ?? []), span]);
  }
  return byName;
}

type Field = { number: number; wire: number; varint: bigint; bytes: Buffer };

function* fields(buffer: Buffer): Generator<Field> {
  let at = 0;
  const varint = (): bigint => {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[at++];
      if (byte === undefined) throw new Error('truncated varint');
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7n;
    }
  };
  while (at < buffer.length) {
    const key = Number(varint());
    const number = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { number, wire, varint: varint(), bytes: Buffer.alloc(0) };
    else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      yield { number, wire, varint: 0n, bytes: buffer.subarray(at, at + size) };
      at += size;
    } else if (wire === 2) {
      const size = Number(varint());
      yield { number, wire, varint: 0n, bytes: buffer.subarray(at, at + size) };
      at += size;
    } else throw new Error(`protobuf wire type ${wire} is not used by OTLP`);
  }
}

function decodeExportRequest(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const resourceSpans of fields(body)) {
    if (resourceSpans.number !== 1) continue;
    let resource: Record<string, AttributeValue> = {};
    const scopes: Buffer[] = [];
    for (const f of fields(resourceSpans.bytes)) {
      if (f.number === 1) resource = attributesOf(f.bytes, 1);
      if (f.number === 2) scopes.push(f.bytes);
    }
    for (const scope of scopes) {
      for (const f of fields(scope)) if (f.number === 2) out.push(decodeSpan(f.bytes, resource));
    }
  }
  return out;
}

function decodeSpan(bytes: Buffer, resource: Record<string, AttributeValue>): ReceivedSpan {
  const span: ReceivedSpan = {
    traceId: '',
    spanId: '',
    parentSpanId: '',
    name: '',
    kind: 0,
    startNs: 0n,
    endNs: 0n,
    attributes: {},
    links: [],
    status: { code: 0, message: '' },
    resource,
  };
  for (const f of fields(bytes)) {
    if (f.number === 1) span.traceId = f.bytes.toString('hex');
    else if (f.number === 2) span.spanId = f.bytes.toString('hex');
    else if (f.number === 4) span.parentSpanId = f.bytes.toString('hex');
    else if (f.number === 5) span.name = f.bytes.toString('utf8');
    else if (f.number === 6) span.kind = Number(f.varint);
    else if (f.number === 7) span.startNs = f.bytes.readBigUInt64LE();
    else if (f.number === 8) span.endNs = f.bytes.readBigUInt64LE();
    else if (f.number === 9) Object.assign(span.attributes, keyValue(f.bytes));
    else if (f.number === 13) {
      const link = { traceId: '', spanId: '', attributes: {} as Record<string, AttributeValue> };
      for (const l of fields(f.bytes)) {
        if (l.number === 1) link.traceId = l.bytes.toString('hex');
        if (l.number === 2) link.spanId = l.bytes.toString('hex');
        if (l.number === 4) Object.assign(link.attributes, keyValue(l.bytes));
      }
      span.links.push(link);
    } else if (f.number === 15) {
      for (const s of fields(f.bytes)) {
        if (s.number === 2) span.status.message = s.bytes.toString('utf8');
        if (s.number === 3) span.status.code = Number(s.varint);
      }
    }
  }
  return span;
}

/** The KeyValue entries (field `number`) of a message, as an object. */
function attributesOf(message: Buffer, number: number): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const f of fields(message)) if (f.number === number) Object.assign(out, keyValue(f.bytes));
  return out;
}

function keyValue(bytes: Buffer): Record<string, AttributeValue> {
  let name = '';
  let value: AttributeValue;
  for (const f of fields(bytes)) {
    if (f.number === 1) name = f.bytes.toString('utf8');
    if (f.number === 2) value = anyValue(f.bytes);
  }
  return { [name]: value };
}

function anyValue(bytes: Buffer): AttributeValue {
  for (const f of fields(bytes)) {
    if (f.number === 1) return f.bytes.toString('utf8');
    if (f.number === 2) return f.varint !== 0n;
    if (f.number === 3) return Number(BigInt.asIntN(64, f.varint));
    if (f.number === 4) return f.bytes.readDoubleLE();
  }
  return undefined;
}
