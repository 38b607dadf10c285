import http, { type ClientRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';

/** Keep-alive agents for one task's upstream traffic, destroyed with its proxy. */
export interface UpstreamAgents {
  http: http.Agent;
  https: https.Agent;
}

/** Creates the keep-alive agents a task proxy uses for git and model upstreams. */
export function createUpstreamAgents(): UpstreamAgents {
  return {
    http: new http.Agent({ keepAlive: true, maxSockets: 16 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 16 }),
  };
}

/**
 * Starts a request to an upstream URL (http or https) with exactly the headers given. `fresh`
 * takes a connection of its own instead of an idle kept-alive one: for a request whose body
 * streams from the guest and cannot be sent again, since an idle connection the server closes
 * just as it is reused fails the request ("socket hang up"), and a git push would be lost.
 */
export function upstreamRequest(
  agents: UpstreamAgents,
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  options: { fresh?: boolean } = {},
): ClientRequest {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new Error(`unsupported upstream protocol ${url.protocol}`);
  const request = {
    method,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || (secure ? 443 : 80),
    path: `${url.pathname}${url.search}`,
    headers,
  };
  return secure
    ? https.request({ ...request, agent: options.fresh ? false : agents.https, servername: url.hostname })
    : http.request({ ...request, agent: options.fresh ? false : agents.http });
}

/** Copies the named headers that are present; names are lower-case. */
export function pickHeaders(headers: IncomingHttpHeaders, names: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of names) {
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and proxy credentials, never forwarded either way. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);
