import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { WEBHOOK_PATH, type WebhookListener } from '../github/webhook-route.ts';

/** A listening airlock HTTP server. */
export interface AirlockServer {
  server: Server;
  port: number;
  /** `http://<host>:<port>`, for loopback use (tests, benchmarks). */
  origin: string;
  webhookUrl: string;
  close(): Promise<void>;
}

/**
 * Serves GitHub's deliveries on {@link WEBHOOK_PATH} straight from Node's request listener (the hot
 * path), and everything else (UI, API, health) through the Hono app, when there is one.
 */
export async function startHttpServer(options: {
  host: string;
  port: number;
  webhooks: WebhookListener;
  fetch?: (request: Request) => Response | Promise<Response>;
}): Promise<AirlockServer> {
  const rest = options.fetch ? getRequestListener(options.fetch) : undefined;
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === WEBHOOK_PATH || url.startsWith(`${WEBHOOK_PATH}?`) || url === `${WEBHOOK_PATH}/`) {
      options.webhooks(req, res);
    } else if (rest) {
      void rest(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  // Keep-alive connections from GitHub's (or a proxy's) senders outlive the default 5 s.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const origin = `http://${host}:${port}`;
  return {
    server,
    port,
    origin,
    webhookUrl: `${origin}${WEBHOOK_PATH}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
