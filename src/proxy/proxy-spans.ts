import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type Context, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
} from '@opentelemetry/semantic-conventions';
import type { TunnelDecision } from './egress-proxy.ts';

/** What a request to the task proxy was for: the route it took. */
export type ProxyRequestKind = 'git' | 'model' | 'egress' | 'debian' | 'refused';

/** Where a proxy request went: its route, and the upstream host it was for (if any). */
export interface ProxyRequestTarget {
  kind: ProxyRequestKind;
  host?: string | undefined;
}

/** The trace a task proxy's requests are recorded in: the task run's span is their parent. */
export interface ProxyTrace {
  tracer: Tracer;
  parent: Context;
}

/**
 * Records each request the task proxy serves as a `proxy.request` span: its kind, upstream host,
 * method, status and the bytes each way on the VM's connection. Nothing else: no path, query,
 * header or body, so no credential (the proxy's own or one the guest sent) and no content can end
 * up in a span. Bytes are the connection's, heads included, between the end of the previous
 * request on it and the end of this one; a CONNECT tunnel counts its whole life.
 */
export function proxyRequestSpans(trace: ProxyTrace) {
  // What each connection had carried when its last request ended (keep-alive reuses connections).
  const carried = new WeakMap<Socket, { read: number; written: number }>();
  const bytesSinceLast = (socket: Socket) => {
    const before = carried.get(socket) ?? { read: 0, written: 0 };
    const now = { read: socket.bytesRead, written: socket.bytesWritten };
    carried.set(socket, now);
    return {
      'airlock.proxy.bytes_from_vm': now.read - before.read,
      'airlock.proxy.bytes_to_vm': now.written - before.written,
    };
  };
  const start = (req: IncomingMessage, target: ProxyRequestTarget) =>
    trace.tracer.startSpan(
      'proxy.request',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'airlock.proxy.kind': target.kind,
          [ATTR_HTTP_REQUEST_METHOD]: req.method ?? '',
          ...(target.host ? { [ATTR_SERVER_ADDRESS]: target.host } : {}),
        },
      },
      trace.parent,
    );

  return {
    /** Starts the span of a plain HTTP request; it ends when the answer is sent or cut. */
    request(req: IncomingMessage, res: ServerResponse, target: ProxyRequestTarget): void {
      const span = start(req, target);
      const socket = req.socket;
      res.once('close', () => {
        span.setAttributes({ [ATTR_HTTP_RESPONSE_STATUS_CODE]: res.statusCode, ...bytesSinceLast(socket) });
        if (!res.writableFinished) span.setAttribute('airlock.proxy.cut', true);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      });
    },
    /** Starts the span of a CONNECT tunnel; it ends when the tunnel closes. */
    tunnel(
      req: IncomingMessage,
      socket: Socket,
      target: ProxyRequestTarget,
      decided: Promise<TunnelDecision>,
    ): void {
      const span = start(req, target);
      decided.then(
        (d) =>
          span.setAttributes({
            [ATTR_HTTP_RESPONSE_STATUS_CODE]: d.status,
            'airlock.proxy.allowed': d.allowed,
          }),
        () => {},
      );
      socket.once('close', () => {
        span.setAttributes(bytesSinceLast(socket));
        span.end();
      });
    },
  };
}

/** The host of a URL, or undefined when it is not one. */
export function hostOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).hostname || undefined;
  } catch {
    return undefined;
  }
}
