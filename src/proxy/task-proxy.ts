import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage, ProxyError } from '../errors.ts';
import type { TaskCredential } from '../github/task-token.ts';
import type { Logger } from '../logger.ts';
import { type AddressAllowed, isPublicAddress } from './address-policy.ts';
import { createDebianProxy, DEBIAN_ROUTE } from './debian-proxy.ts';
import type { DebianSource } from './debian-sources.ts';
import type { DestinationSecret } from './destination-secret.ts';
import type { EgressCa } from './egress-ca.ts';
import { type LookupAll, lookupAll } from './egress-policy.ts';
import { createEgressProxy } from './egress-proxy.ts';
import { createGitProxy, DEFAULT_MAX_PACK_BYTES } from './git-proxy.ts';
import { createModelProxy, type ModelUpstreams, type TokenUsage } from './model-proxy.ts';
import { hostOf, type ProxyRequestTarget, type ProxyTrace, proxyRequestSpans } from './proxy-spans.ts';
import { createSecretInterceptor } from './secret-interceptor.ts';
import { createUpstreamAgents } from './upstream-request.ts';

/**
 * How long the proxy keeps an idle client connection open: longer than HTTP clients keep idle
 * pooled connections (Bun's fetch, in OpenCode and Claude Code: 5 minutes), so that the client, not
 * the proxy, closes them. With Node's default of 5 s the proxy closed first, and a model call sent
 * on the closing connection failed the agent ("socket closed unexpectedly", "Malformed HTTP
 * response") — seen with OpenCode under TCG, whose steps are more than 5 s apart.
 */
export const CLIENT_KEEP_ALIVE_MS = 10 * 60_000;

/** Everything one task's proxy needs. It holds the task's credentials; the VM never does. */
export interface TaskProxyOptions {
  taskId: string;
  repository: { owner: string; name: string };
  /** The only branch the task may push: `airlock/…`; null for none (an environment build). */
  branch: string | null;
  /**
   * Where to listen: a unix socket path (the VM's guestfwd helper connects to it; its directory is
   * created 0700 and the socket made 0600), or `{ tcp: true }` for 127.0.0.1 on a free port.
   */
  listen: { socketPath: string } | { tcp: true };
  /** Upstream smart-HTTP URL of a repository (`https://github.com/o/r.git` in production). */
  gitUrl(owner: string, name: string): string;
  /** The task's GitHub credential; revoked when the proxy closes. */
  credential: TaskCredential;
  /**
   * Other repositories of the installation the task may fetch but never push (owner/name), and the
   * read-only credential scoped to them; revoked when the proxy closes.
   */
  readRepositories?: { names: readonly string[]; credential: TaskCredential };
  models: ModelUpstreams;
  /** Host names (and `*.domain` wildcards) the VM may reach beyond git and the model APIs. */
  egressAllow: readonly string[];
  /** Ports allowlisted hosts may be reached on (default 80 and 443). */
  egressPorts?: readonly number[];
  /**
   * Credentials the operator bound to destinations, granted to this task, and the CA the guest
   * trusts for their hosts (its key stays on the host). Their hosts are reachable on their ports;
   * TLS to them is terminated here so the credential can be added. Every other host is tunnelled.
   */
  destinationSecrets?: { ca: EgressCa; secrets: readonly DestinationSecret[] };
  /**
   * Serve the Debian archives at `/debian/N/` (read-only, audited per request), for environment
   * builds that install packages as root; archive N is the N-th entry. Unset for tasks: no route.
   */
  debianArchives?: readonly DebianSource[];
  /**
   * Model API features that make the provider reach elsewhere (names from MODEL_FEATURES, e.g.
   * `web_search`) this task may use: the repository's `models.allow` intersected with what the
   * operator permits. Default none.
   */
  modelFeatures?: readonly string[];
  /** Input plus output model tokens the task may use. */
  budgetTokens: number;
  /** Called once when the budget is exceeded; the runner stops the task. */
  onBudgetExceeded(usage: TokenUsage): void;
  maxPackBytes?: number;
  /** A host-side bare repository that receives the task's pushes instead of the upstream. */
  holdPushesIn?: string;
  /** How long an idle client connection stays open (default `CLIENT_KEEP_ALIVE_MS`). */
  clientKeepAliveMs?: number;
  /** Name resolution for egress; defaults to the host's resolver, all addresses. */
  lookup?: LookupAll;
  /** Which resolved addresses egress may dial; defaults to public unicast only. */
  addressAllowed?: AddressAllowed;
  audit: AuditSink;
  log: Logger;
  /** Where each request's `proxy.request` span goes (see proxyRequestSpans); none when unset. */
  trace?: ProxyTrace;
}

/** A running task proxy. */
export interface TaskProxy {
  /** The socket path, or `http://127.0.0.1:PORT`. */
  readonly address: string;
  /** Model tokens used so far by this task. */
  usage(): TokenUsage;
  /**
   * Stops listening, cuts every connection and revokes the task's token; safe to call twice. Says
   * what it checked: a failed revocation is logged and reported, not thrown (the token then
   * expires within the hour).
   */
  close(): Promise<ProxyClosed>;
}

/** What {@link TaskProxy.close} checked after closing, for the audit record. */
export interface ProxyClosed {
  /** The server no longer listens and its unix socket file (if any) is gone. */
  listenerClosed: boolean;
  tokenRevoked: boolean;
}

/**
 * Whether a request path is already what URL parsing would make of it: no `.`/`..` segments
 * (encoded or not), no encoded slashes or backslashes, nothing that needs encoding. Each part of the proxy then sees
 * the path the upstream would see.
 */
function inNormalForm(target: string): boolean {
  if (!target.startsWith('/')) return false;
  const path = target.split('?')[0]!;
  // Encoded dots and slashes are where servers disagree about what a path means.
  if (/%(2e|2f|5c)/i.test(path)) return false;
  try {
    return new URL(path, 'http://proxy.invalid').pathname === path;
  } catch {
    return false;
  }
}

/**
 * Starts the proxy for one task: one listener serving git smart HTTP for the task's repository,
 * the model APIs and allowlisted egress. A connection's task is the listener it arrived on, so no
 * bearer secret has to enter the VM.
 */
export async function startTaskProxy(options: TaskProxyOptions): Promise<TaskProxy> {
  const { taskId, audit, log } = options;
  const agents = createUpstreamAgents();
  const git = createGitProxy({
    taskId,
    repository: options.repository,
    branch: options.branch,
    upstreamUrl: options.gitUrl(options.repository.owner, options.repository.name),
    token: () => options.credential.token(),
    ...(options.readRepositories?.names.length
      ? {
          readOnly: {
            repositories: options.readRepositories.names,
            upstreamUrl: options.gitUrl,
            token: () => options.readRepositories!.credential.token(),
          },
        }
      : {}),
    maxPackBytes: options.maxPackBytes ?? DEFAULT_MAX_PACK_BYTES,
    ...(options.holdPushesIn ? { holdPushesIn: options.holdPushesIn } : {}),
    agents,
    audit,
    log,
  });
  const models = createModelProxy({
    taskId,
    upstreams: options.models,
    budgetTokens: options.budgetTokens,
    onBudgetExceeded: options.onBudgetExceeded,
    ...(options.modelFeatures ? { modelFeatures: options.modelFeatures } : {}),
    agents,
    audit,
    log,
  });
  const debian = options.debianArchives?.length
    ? createDebianProxy({ taskId, archives: options.debianArchives, agents, audit, log })
    : undefined;
  const bound = options.destinationSecrets;
  const interceptor = bound?.secrets.length
    ? await createSecretInterceptor({ taskId, ca: bound.ca, secrets: bound.secrets, audit, log })
    : undefined;
  const boundSecrets = bound?.secrets ?? [];
  const egress = createEgressProxy({
    taskId,
    allow: [...options.egressAllow, ...boundSecrets.map((s) => s.host)],
    ...(options.egressPorts ? { ports: options.egressPorts } : {}),
    ...(interceptor ? { interceptor } : {}),
    lookup: options.lookup ?? lookupAll,
    addressAllowed: options.addressAllowed ?? isPublicAddress,
    audit,
    log,
  });

  const route = async (req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? '/';
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return egress.forward(req, res);
    if (!inNormalForm(target)) {
      const path = target.split('?')[0];
      audit.append(taskId, 'proxy.refused', {
        method: req.method,
        path,
        status: 400,
        reason: 'path not in normal form',
      });
      res
        .writeHead(400, { 'content-type': 'text/plain; charset=utf-8' })
        .end(
          'airlock: the request path has dot segments, backslashes or characters that need encoding; send the path as is\n',
        );
      return;
    }
    if (target.startsWith('/git/')) return git(req, res);
    if (debian && target.startsWith(DEBIAN_ROUTE)) return debian(req, res);
    if (models.handles(target)) return models.handle(req, res);
    const message = `airlock: ${req.method} ${target.split('?')[0]} is not served by the task proxy`;
    audit.append(taskId, 'proxy.refused', { method: req.method, path: target.split('?')[0] });
    res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
  };

  const spans = options.trace ? proxyRequestSpans(options.trace) : undefined;
  const gitHost = hostOf(options.gitUrl(options.repository.owner, options.repository.name));
  // The route a request takes and the upstream host it is for, as route() will decide them.
  const targetOf = (target: string): ProxyRequestTarget => {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) return { kind: 'egress', host: hostOf(target) };
    if (!inNormalForm(target)) return { kind: 'refused' };
    if (target.startsWith('/git/')) return { kind: 'git', host: gitHost };
    if (debian && target.startsWith(DEBIAN_ROUTE)) {
      const archive = options.debianArchives?.[Number(target.slice(DEBIAN_ROUTE.length).split('/')[0])];
      return { kind: 'debian', host: hostOf(archive?.uri) };
    }
    if (models.handles(target)) {
      const provider = target.split('/')[1] as keyof ModelUpstreams;
      return { kind: 'model', host: hostOf(options.models[provider]?.url) };
    }
    return { kind: 'refused' };
  };

  const sockets = new Set<Socket>();
  const server = createServer(
    {
      requestTimeout: 0,
      headersTimeout: 60_000,
      keepAliveTimeout: options.clientKeepAliveMs ?? CLIENT_KEEP_ALIVE_MS,
    },
    (req, res) => {
      spans?.request(req, res, targetOf(req.url ?? '/'));
      route(req, res).catch((error: unknown) => {
        log.error({ taskId, err: errorMessage(error), path: req.url }, 'task proxy request failed');
        if (!res.headersSent)
          res.writeHead(500, { 'content-type': 'text/plain' }).end('airlock: proxy error\n');
        else res.destroy();
      });
    },
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const decided = egress.connect(req, socket, head);
    spans?.tunnel(req, socket, { kind: 'egress', host: hostOf(`https://${req.url}`) }, decided);
  });

  let address: string;
  if ('socketPath' in options.listen) {
    const socketPath = options.listen.socketPath;
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    await rm(socketPath, { force: true });
    await listen(() => server.listen(socketPath));
    await chmod(socketPath, 0o600);
    address = socketPath;
  } else {
    await listen(() => server.listen(0, '127.0.0.1'));
    address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  log.info({ taskId, address }, 'task proxy listening');

  function listen(start: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', (cause) =>
        reject(new ProxyError('proxy_listen', `task proxy for ${taskId} cannot listen`, { cause })),
      );
      server.once('listening', resolve);
      start();
    });
  }

  let closing: Promise<ProxyClosed> | undefined;
  return {
    address,
    usage: () => models.usage(),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        egress.close();
        agents.http.destroy();
        agents.https.destroy();
        await closed;
        let socketGone = true;
        if ('socketPath' in options.listen) {
          const socketPath = options.listen.socketPath;
          await rm(socketPath, { force: true });
          socketGone = await stat(socketPath).then(
            () => false,
            (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
          );
        }
        const listenerClosed = !server.listening && socketGone;
        const credentials = [
          options.credential,
          ...(options.readRepositories ? [options.readRepositories.credential] : []),
        ];
        const revocations = await Promise.allSettled(credentials.map((c) => c.revoke()));
        for (const outcome of revocations) {
          if (outcome.status === 'rejected')
            log.error({ taskId, err: errorMessage(outcome.reason) }, 'could not revoke the task token');
        }
        const tokenRevoked = revocations.every((outcome) => outcome.status === 'fulfilled');
        log.info({ taskId, usage: models.usage(), listenerClosed, tokenRevoked }, 'task proxy closed');
        return { listenerClosed, tokenRevoked };
      })();
      return closing;
    },
  };
}
