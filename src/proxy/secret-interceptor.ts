import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createSecureContext, rootCertificates, type SecureContext, TLSSocket } from 'node:tls';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage, ProxyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type DestinationSecret, REDACTED_MARK, RedactingStream, secretForms } from './destination-secret.ts';
import { type EgressCa, issueHostCertificate } from './egress-ca.ts';
import { HOP_BY_HOP } from './upstream-request.ts';

/** What the interceptor needs: the secrets, the CA that signs for their hosts, the audit. */
export interface SecretInterceptorOptions {
  taskId: string;
  ca: EgressCa;
  secrets: readonly DestinationSecret[];
  audit: AuditSink;
  log: Logger;
}

/** A connection the egress policy allowed, to a host with a bound secret. */
export interface InterceptedTarget {
  host: string;
  port: number;
  /** The checked address to dial (never looked up again). */
  address: string;
  addresses: string[];
}

/**
 * Terminates TLS for the hosts that have a secret bound to them, so the proxy can add the secret to
 * each request: the guest speaks TLS to a certificate this proxy issues from `ca` (which the guest
 * trusts), and the proxy speaks TLS to the real host, verifying its certificate. The guest's own
 * value for the credential's header is dropped; the credential is removed from every response
 * header and body before the guest sees it (bodies are asked for uncompressed, and decompressed
 * when a server compresses anyway, so the search sees the bytes as they are).
 */
export async function createSecretInterceptor(options: SecretInterceptorOptions) {
  const bySite = new Map<string, { secret: DestinationSecret; context: SecureContext; agent: https.Agent }>();
  for (const secret of options.secrets) {
    const site = `${secret.host}:${secret.port}`;
    if (bySite.has(site)) throw new ProxyError('secret_bound_twice', `two secrets are bound to ${site}`);
    const { certPem, keyPem } = await issueHostCertificate(options.ca, secret.host);
    bySite.set(site, {
      secret,
      context: createSecureContext({ cert: certPem, key: keyPem }),
      // One pool per host: its connections are verified against that host's trust (ca_file).
      agent: new https.Agent({
        keepAlive: true,
        maxSockets: 16,
        ...(secret.upstreamCa ? { ca: [...rootCertificates, secret.upstreamCa] } : {}),
      }),
    });
  }
  const upstreams = new Set<http.ClientRequest>();
  const connections = new Set<Socket>();

  const serve = (
    req: IncomingMessage,
    res: ServerResponse,
    { secret, agent }: { secret: DestinationSecret; agent: https.Agent },
    target: InterceptedTarget,
  ): Promise<void> => {
    const method = req.method ?? 'GET';
    const requestPath = req.url ?? '/';
    const forms = secretForms(secret);
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (HOP_BY_HOP.has(name) || name === secret.header || name === 'accept-encoding') continue;
      if (value !== undefined) headers[name] = value;
    }
    headers.host = target.port === 443 ? target.host : `${target.host}:${target.port}`;
    headers[secret.header] = secret.headerValue;
    // Uncompressed answers, so the search for the credential sees the bytes themselves.
    headers['accept-encoding'] = 'identity';
    const bytes = { up: 0, down: 0 };
    const record = (status: number | undefined, removed: number, reason?: string) =>
      options.audit.append(options.taskId, 'proxy.egress', {
        method,
        host: target.host,
        port: target.port,
        path: requestPath.split('?')[0],
        addresses: target.addresses,
        decision: 'allowed',
        secret: secret.name,
        ...(status !== undefined ? { status } : {}),
        ...(removed ? { credential_removed: removed } : {}),
        ...(reason ? { reason } : {}),
        bytes_up: bytes.up,
        bytes_down: bytes.down,
      });
    return new Promise<void>((resolve) => {
      const up = https.request({
        host: target.address,
        servername: target.host,
        port: target.port,
        method,
        path: requestPath,
        headers,
        agent,
      });
      upstreams.add(up);
      let finished = false;
      const done = (status: number | undefined, removed: number, reason?: string) => {
        if (finished) return;
        finished = true;
        upstreams.delete(up);
        record(status, removed, reason);
        resolve();
      };
      up.on('error', (error) => {
        if (!res.headersSent)
          res
            .writeHead(502, { 'content-type': 'text/plain' })
            .end(`airlock: ${target.host} could not be reached: ${scrub(errorMessage(error), forms)}\n`);
        else res.destroy();
        done(undefined, 0, `upstream error: ${errorMessage(error)}`);
      });
      up.on('response', (upRes) => {
        const out: OutgoingHttpHeaders = {};
        let removed = 0;
        for (const [name, value] of Object.entries(upRes.headers)) {
          if (HOP_BY_HOP.has(name) || value === undefined) continue;
          if (name === 'content-length' || name === 'content-encoding') continue;
          const text = Array.isArray(value) ? value.join('\n') : value;
          if (forms.some((form) => text.includes(form))) {
            removed++;
            continue;
          }
          out[name] = value;
        }
        let body: Readable = upRes;
        const decoder = decoderFor(upRes.headers['content-encoding']);
        if (decoder === null) {
          upRes.resume();
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(
            `airlock: ${target.host} answered in an encoding airlock cannot check for the credential\n`,
          );
          return done(
            upRes.statusCode,
            removed,
            `unknown content-encoding ${upRes.headers['content-encoding']}`,
          );
        }
        upRes.on('data', (chunk: Buffer) => {
          bytes.down += chunk.length;
        });
        if (decoder) body = upRes.pipe(decoder);
        const redact = new RedactingStream(forms);
        res.writeHead(upRes.statusCode ?? 502, out);
        pipeline(body, redact, res).then(
          () => done(upRes.statusCode, removed + redact.found),
          (error: unknown) =>
            done(upRes.statusCode, removed + redact.found, `stream error: ${errorMessage(error)}`),
        );
      });
      req.on('data', (chunk: Buffer) => {
        bytes.up += chunk.length;
      });
      req.pipe(up);
    });
  };

  return {
    /** Whether requests to `host:port` carry a bound secret (and so are intercepted). */
    intercepts(host: string, port: number): boolean {
      return bySite.has(`${host}:${port}`);
    },

    /** The name of the secret bound to `host` on any port, if one is. */
    boundTo(host: string): string | undefined {
      return options.secrets.find((s) => s.host === host)?.name;
    },

    /**
     * Takes over a CONNECT client whose ClientHello (`hello`, already read) named an intercepted
     * host: answers the TLS handshake with the issued certificate and serves HTTP/1.1 inside.
     */
    intercept(client: Socket, hello: Buffer, target: InterceptedTarget): void {
      const entry = bySite.get(`${target.host}:${target.port}`);
      if (!entry) throw new Error(`no secret is bound to ${target.host}:${target.port}`);
      const tls = new TLSSocket(withPrefix(client, hello), {
        isServer: true,
        secureContext: entry.context,
        ALPNProtocols: ['http/1.1'],
      });
      connections.add(client);
      client.on('close', () => connections.delete(client));
      tls.on('error', (error) => {
        options.log.info(
          { taskId: options.taskId, host: target.host, err: errorMessage(error) },
          'intercepted TLS failed',
        );
        client.destroy();
      });
      const server = http.createServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
        serve(req, res, entry, target).catch((error: unknown) => {
          options.log.error(
            { taskId: options.taskId, err: errorMessage(error) },
            'intercepted request failed',
          );
          res.destroy();
        });
      });
      server.emit('connection', tls);
    },

    /** Cuts every intercepted connection and its upstream requests. */
    close(): void {
      for (const up of upstreams) up.destroy();
      for (const socket of connections) socket.destroy();
      for (const { agent } of bySite.values()) agent.destroy();
      upstreams.clear();
      connections.clear();
    },
  };
}

export type SecretInterceptor = Awaited<ReturnType<typeof createSecretInterceptor>>;

/**
 * The client's socket as a stream that first yields `prefix` (the ClientHello already read from it).
 * Handing the socket itself to TLSSocket would wrap its native handle and lose those bytes.
 */
function withPrefix(socket: Socket, prefix: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  stream.push(prefix);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.on('end', () => stream.push(null));
  socket.on('close', () => stream.destroy());
  return stream;
}

/** A decoder for a response's content-encoding: undefined for none, null for one not known. */
function decoderFor(encoding: string | string[] | undefined) {
  const name = (Array.isArray(encoding) ? encoding.join(',') : (encoding ?? '')).trim().toLowerCase();
  if (name === '' || name === 'identity') return undefined;
  if (name === 'gzip' || name === 'x-gzip') return createGunzip();
  if (name === 'deflate') return createInflate();
  if (name === 'br') return createBrotliDecompress();
  return null;
}

function scrub(text: string, forms: readonly string[]): string {
  return forms.reduce((out, form) => out.split(form).join(REDACTED_MARK), text);
}
