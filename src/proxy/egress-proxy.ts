import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { type Socket, connect as tcpConnect } from 'node:net';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AddressAllowed } from './address-policy.ts';
import {
  DEFAULT_EGRESS_PORTS,
  type EgressDecision,
  egressDecision,
  type LookupAll,
} from './egress-policy.ts';
import type { SecretInterceptor } from './secret-interceptor.ts';
import { readClientHello } from './tls-client-hello.ts';
import { HOP_BY_HOP } from './upstream-request.ts';

/** How long a CONNECT client has to send its ClientHello. */
const CLIENT_HELLO_TIMEOUT_MS = 10_000;

/** What the egress part of a task proxy needs. */
export interface EgressProxyOptions {
  taskId: string;
  allow: readonly string[];
  ports?: readonly number[];
  lookup: LookupAll;
  addressAllowed: AddressAllowed;
  /** Terminates TLS for the hosts with a bound secret and adds it; every other host is tunnelled. */
  interceptor?: SecretInterceptor;
  audit: AuditSink;
  log: Logger;
}

/**
 * Builds the egress proxy: absolute-form HTTP requests and CONNECT tunnels to allowlisted names
 * only, resolved here, refused when any address is not public, dialled at the address that was
 * checked. CONNECT tunnels must open with a TLS ClientHello whose SNI is the CONNECT host.
 */
export function createEgressProxy(options: EgressProxyOptions) {
  const ports = options.ports ?? DEFAULT_EGRESS_PORTS;
  const upstreams = new Set<Socket | http.ClientRequest>();

  const audit = (
    method: string,
    host: string,
    port: number,
    decision: { addresses: string[]; reason?: string; allowed: boolean },
    bytes: { up: number; down: number } = { up: 0, down: 0 },
  ) => {
    options.audit.append(options.taskId, 'proxy.egress', {
      method,
      host,
      port,
      addresses: decision.addresses,
      decision: decision.allowed ? 'allowed' : 'refused',
      ...(decision.reason ? { reason: decision.reason } : {}),
      bytes_up: bytes.up,
      bytes_down: bytes.down,
    });
  };

  const authorize = (host: string, port: number) =>
    egressDecision(host, port, {
      allow: options.allow,
      // A secret's own port is open for its host alone.
      ports: options.interceptor?.intercepts(host, port) ? [...ports, port] : ports,
      lookup: options.lookup,
      addressAllowed: options.addressAllowed,
    });

  return {
    /** Serves an absolute-form `http://` request. */
    async forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const method = req.method ?? 'GET';
      let url: URL;
      try {
        url = new URL(req.url ?? '');
      } catch {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('airlock: malformed proxy request\n');
        return;
      }
      const host = url.hostname;
      const port = Number(url.port || 80);
      const bound = options.interceptor?.boundTo(host);
      const decision: EgressDecision =
        url.protocol !== 'http:'
          ? { ok: false, addresses: [], reason: `${url.protocol} requests must use CONNECT` }
          : bound
            ? {
                ok: false,
                addresses: [],
                reason: `${host} has a credential bound to it, which is only sent over https`,
              }
            : await authorize(host, port);
      if (!decision.ok) {
        audit(method, host, port, { ...decision, allowed: false });
        res
          .writeHead(403, { 'content-type': 'text/plain' })
          .end(`airlock: egress refused: ${decision.reason}\n`);
        return;
      }
      const headers: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
      }
      headers.host = url.host;
      const bytes = { up: 0, down: 0 };
      await new Promise<void>((resolve) => {
        const up = http.request({
          host: decision.address,
          port,
          method,
          path: `${url.pathname}${url.search}`,
          headers,
          agent: false,
        });
        upstreams.add(up);
        let finished = false;
        const done = (reason?: string) => {
          if (finished) return;
          finished = true;
          upstreams.delete(up);
          audit(
            method,
            host,
            port,
            { addresses: decision.addresses, allowed: true, ...(reason ? { reason } : {}) },
            bytes,
          );
          resolve();
        };
        up.on('error', (error) => {
          if (!res.headersSent)
            res.writeHead(502, { 'content-type': 'text/plain' }).end(`airlock: ${errorMessage(error)}\n`);
          else res.destroy();
          done(`upstream error: ${errorMessage(error)}`);
        });
        up.on('response', (upRes) => {
          const out: OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(upRes.headers)) {
            if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
          }
          res.writeHead(upRes.statusCode ?? 502, out);
          upRes.on('data', (chunk: Buffer) => {
            bytes.down += chunk.length;
          });
          upRes.pipe(res);
          upRes.on('end', () => done());
          upRes.on('error', (error) => done(`upstream error: ${errorMessage(error)}`));
        });
        req.on('data', (chunk: Buffer) => {
          bytes.up += chunk.length;
        });
        req.pipe(up);
      });
    },

    /**
     * Serves `CONNECT host:port` on the client's raw socket; resolves, once decided, with the status
     * the CONNECT was answered with and whether the tunnel was let through.
     */
    connect(req: IncomingMessage, client: Socket, head: Buffer): Promise<TunnelDecision> {
      // host:port, where host may be a bracketed IPv6 literal (refused as an address, with that reason).
      const target = /^(\[[0-9a-f:.]+\]|[^:[\]]+):(\d+)$/i.exec(req.url ?? '');
      const host = (target?.[1] ?? req.url ?? '').toLowerCase();
      const port = Number(target?.[2] ?? 0);
      client.on('error', () => client.destroy());
      const refuse = (addresses: string[], reason: string, answered: boolean): TunnelDecision => {
        audit('CONNECT', host, port, { addresses, reason, allowed: false });
        options.log.info({ taskId: options.taskId, host, port, reason }, 'egress refused');
        if (answered) client.destroy();
        else
          client.end(
            `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nairlock: egress refused: ${reason}\n`,
          );
        return { status: answered ? 200 : 403, allowed: false };
      };
      return (async (): Promise<TunnelDecision> => {
        if (!target) return refuse([], 'CONNECT needs host:port', false);
        const decision = await authorize(host, port);
        if (!decision.ok) return refuse(decision.addresses, decision.reason, false);
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        let hello: Buffer;
        try {
          hello = await readHello(client, head);
        } catch (error) {
          return refuse(decision.addresses, errorMessage(error), true);
        }
        const parsed = readClientHello(hello);
        const sni = parsed.complete ? parsed.serverName : undefined;
        if (sni !== host) {
          return refuse(
            decision.addresses,
            sni ? `TLS server name ${sni} does not match ${host}` : 'TLS ClientHello has no server name',
            true,
          );
        }
        if (options.interceptor?.intercepts(host, port)) {
          audit('CONNECT', host, port, {
            addresses: decision.addresses,
            allowed: true,
            reason: 'TLS terminated to add the bound credential',
          });
          options.interceptor.intercept(client, hello, {
            host,
            port,
            address: decision.address,
            addresses: decision.addresses,
          });
          return { status: 200, allowed: true };
        }
        const bytes = { up: hello.length, down: 0 };
        const upstream = tcpConnect({ host: decision.address, port });
        upstreams.add(upstream);
        let finished = false;
        const finish = (reason?: string) => {
          if (finished) return;
          finished = true;
          upstreams.delete(upstream);
          client.destroy();
          upstream.destroy();
          audit(
            'CONNECT',
            host,
            port,
            { addresses: decision.addresses, allowed: true, ...(reason ? { reason } : {}) },
            bytes,
          );
        };
        upstream.on('connect', () => {
          upstream.write(hello);
          client.on('data', (chunk: Buffer) => {
            bytes.up += chunk.length;
          });
          upstream.on('data', (chunk: Buffer) => {
            bytes.down += chunk.length;
          });
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
        upstream.on('error', (error) => finish(`upstream error: ${errorMessage(error)}`));
        upstream.on('close', () => finish());
        client.on('close', () => finish());
        return { status: 200, allowed: true };
      })().catch((error: unknown) => refuse([], `internal error: ${errorMessage(error)}`, true));
    },

    /** Cuts every open upstream connection (the task is over). */
    close(): void {
      options.interceptor?.close();
      for (const upstream of upstreams) upstream.destroy();
      upstreams.clear();
    },
  };
}

/** How a CONNECT was answered (200 or 403), and whether its tunnel was let through. */
export interface TunnelDecision {
  status: number;
  allowed: boolean;
}

/** Reads from a CONNECT client until a whole ClientHello has arrived, then pauses it. */
function readHello(client: Socket, head: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffer = head;
    const check = () => {
      try {
        if (buffer.length && readClientHello(buffer).complete) {
          cleanup();
          client.pause();
          resolve(buffer);
        }
      } catch (error) {
        cleanup();
        reject(error);
      }
    };
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      check();
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('client closed before sending a TLS ClientHello'));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('no TLS ClientHello within 10 s'));
    }, CLIENT_HELLO_TIMEOUT_MS);
    const cleanup = () => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onEnd);
    };
    client.on('data', onData);
    client.on('end', onEnd);
    client.on('close', onEnd);
    check();
  });
}
