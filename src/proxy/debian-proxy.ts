import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { DebianSource } from './debian-sources.ts';
import { pickHeaders, type UpstreamAgents, upstreamRequest } from './upstream-request.ts';

/** Where the guest's apt finds archive N: `http://10.0.2.100/debian/N/`. */
export const DEBIAN_ROUTE = '/debian/';

const REQUEST_HEADERS = ['accept', 'range', 'if-range', 'if-modified-since', 'cache-control', 'user-agent'];
const RESPONSE_HEADERS = [
  'content-type',
  'content-length',
  'content-range',
  'accept-ranges',
  'last-modified',
  'etag',
  'date',
];

/** What the Debian route of a task proxy needs. */
export interface DebianProxyOptions {
  taskId: string;
  /** The archives, in order: archive N is served at `/debian/N/`. */
  archives: readonly DebianSource[];
  agents: UpstreamAgents;
  audit: AuditSink;
  log: Logger;
}

/**
 * Builds the handler for `/debian/N/…`: read-only (GET and HEAD) requests forwarded to the N-th
 * configured archive, each one audited as `proxy.debian`. Redirects are not followed or passed on:
 * the guest could not follow them, and the archive is the operator's to name exactly.
 */
export function createDebianProxy(options: DebianProxyOptions) {
  const refuse = (req: IncomingMessage, res: ServerResponse, status: number, message: string) => {
    options.audit.append(options.taskId, 'proxy.debian', {
      method: req.method,
      path: (req.url ?? '').split('?')[0],
      decision: 'refused',
      reason: message,
    });
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`airlock: ${message}\n`);
  };

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const match = /^\/debian\/(\d+)\/(.*)$/.exec(req.url ?? '');
    if (method !== 'GET' && method !== 'HEAD')
      return refuse(req, res, 405, `the Debian archive route is read-only; ${method} is not allowed`);
    const archive = match ? options.archives[Number(match[1])] : undefined;
    if (!match || !archive)
      return refuse(req, res, 404, `no Debian archive at ${(req.url ?? '').split('?')[0]}`);
    if (match[2]!.includes('?'))
      return refuse(req, res, 400, 'the Debian archive route takes no query strings');
    const target = new URL(`${archive.uri.replace(/\/+$/, '')}/${match[2]}`);
    const bytes = { down: 0 };
    await new Promise<void>((resolve) => {
      let finished = false;
      const done = (status: number | undefined, reason?: string) => {
        if (finished) return;
        finished = true;
        options.audit.append(options.taskId, 'proxy.debian', {
          method,
          path: `/${match[2]}`,
          archive: Number(match[1]),
          decision: 'forwarded',
          ...(status !== undefined ? { status } : {}),
          ...(reason ? { reason } : {}),
          bytes_down: bytes.down,
        });
        resolve();
      };
      const up = upstreamRequest(options.agents, target, method, pickHeaders(req.headers, REQUEST_HEADERS));
      up.on('error', (error) => {
        if (!res.headersSent)
          res
            .writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
            .end(`airlock: the Debian archive could not be reached: ${errorMessage(error)}\n`);
        else res.destroy();
        done(undefined, `upstream error: ${errorMessage(error)}`);
      });
      up.on('response', (upRes) => {
        const status = upRes.statusCode ?? 502;
        if (status >= 300 && status < 400 && status !== 304) {
          upRes.resume();
          const where = String(upRes.headers.location ?? 'elsewhere');
          options.log.warn(
            { taskId: options.taskId, archive: archive.uri, where },
            'Debian archive redirected',
          );
          res
            .writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
            .end(
              `airlock: the Debian archive ${archive.uri} redirected to ${where}; name the final archive URL in AIRLOCK_DEBIAN_SOURCES\n`,
            );
          return done(status, `redirected to ${where}`);
        }
        res.writeHead(status, pickHeaders(upRes.headers, RESPONSE_HEADERS));
        upRes.on('data', (chunk: Buffer) => {
          bytes.down += chunk.length;
        });
        pipeline(upRes, res).then(
          () => done(status),
          (error: unknown) => done(status, `stream error: ${errorMessage(error)}`),
        );
      });
      up.end();
    });
  };
}
