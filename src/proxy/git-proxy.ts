import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import { serveGit } from '../git/http-backend.ts';
import type { Logger } from '../logger.ts';
import { runProcess } from '../process/run-process.ts';
import {
  MAX_COMMAND_SECTION_BYTES,
  type ReceivePackCommands,
  readReceivePackCommands,
  refusedPushResponse,
} from './pkt-line.ts';
import { refUpdateAllowed, taskBranchRef } from './ref-update-policy.ts';
import { pickHeaders, type UpstreamAgents, upstreamRequest } from './upstream-request.ts';

/** What the git part of a task proxy needs. */
export interface GitProxyOptions {
  taskId: string;
  repository: { owner: string; name: string };
  /** The task's branch, `airlock/…` (the only ref it may push); null: read-only (an environment build). */
  branch: string | null;
  /** The upstream smart-HTTP URL of the task's repository (`https://github.com/o/r.git`). */
  upstreamUrl: string;
  /** The task's installation token; called per request so a refreshed token is picked up. */
  token: () => Promise<string>;
  /**
   * Other repositories of the same installation the task may fetch (never push), as owner/name,
   * with a token scoped to them alone (read-only).
   */
  readOnly?: {
    repositories: readonly string[];
    upstreamUrl(owner: string, name: string): string;
    token: () => Promise<string>;
  };
  /** Largest pack a push may send, in bytes. */
  maxPackBytes: number;
  /**
   * A bare repository on the host that receives the task's pushes instead of the upstream
   * (`approval.before_push: always`): the ref checks are the same, nothing is sent upstream, and
   * an update is recorded as `held` once the host sees the branch at the pushed commit.
   */
  holdPushesIn?: string;
  agents: UpstreamAgents;
  audit: AuditSink;
  log: Logger;
}

/** Default cap on a pushed pack: 500 MiB. */
export const DEFAULT_MAX_PACK_BYTES = 500 * 1024 * 1024;

const PATH = /^\/git\/([^/]+)\/([^/]+?)(?:\.git)?\/(info\/refs|git-upload-pack|git-receive-pack)$/;
const SERVICES = new Set(['git-upload-pack', 'git-receive-pack']);
const REQUEST_HEADERS = [
  'accept',
  'accept-encoding',
  'content-type',
  'content-encoding',
  'content-length',
  'git-protocol',
  'user-agent',
];
const RESPONSE_HEADERS = [
  'content-type',
  'content-encoding',
  'content-length',
  'cache-control',
  'expires',
  'pragma',
];

/**
 * Builds the handler for `/git/{owner}/{repo}.git/…`: smart HTTP for the task's one repository,
 * forwarded upstream with the task's token. The guest's own Authorization header is never read.
 * Pushes are inspected before anything goes upstream: only the task branch may move.
 */
export function createGitProxy(
  options: GitProxyOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const ownBranch = options.branch === null ? null : taskBranchRef(options.branch);
  const repo = `${options.repository.owner}/${options.repository.name}`;
  const upstreamBase = options.upstreamUrl.replace(/\/+$/, '');
  const readable = new Set(options.readOnly?.repositories.map((r) => r.toLowerCase()) ?? []);

  const refuse = (
    res: ServerResponse,
    status: number,
    service: string,
    message: string,
    target: string = repo,
  ) => {
    options.audit.append(options.taskId, 'proxy.git', {
      service,
      repo: target,
      decision: 'refused',
      reason: message,
    });
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
  };

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    const match = PATH.exec(url.pathname);
    if (!match) return refuse(res, 404, 'unknown', `airlock: no git endpoint at ${url.pathname}`);
    const [, owner, name, endpoint] = match as unknown as [string, string, string, string];
    const service = endpoint === 'info/refs' ? (url.searchParams.get('service') ?? '') : endpoint;
    const asked = `${owner}/${name}`;
    const own = asked.toLowerCase() === repo.toLowerCase();
    const readOnly = !own && readable.has(asked.toLowerCase()) ? options.readOnly : undefined;
    if (!own && !readOnly) {
      const also = options.readOnly?.repositories.length
        ? ` (and read ${options.readOnly.repositories.join(', ')})`
        : '';
      return refuse(
        res,
        403,
        service,
        `airlock: this task can only reach ${repo}${also}, not ${asked}`,
        asked,
      );
    }
    if (!SERVICES.has(service)) {
      return refuse(
        res,
        403,
        service,
        'airlock: only smart HTTP (git-upload-pack, git-receive-pack) is served',
        asked,
      );
    }
    if (readOnly && service === 'git-receive-pack') {
      return refuse(
        res,
        403,
        service,
        `airlock: ${asked} is read-only for this task; pushes go to ${repo} only`,
        asked,
      );
    }
    if (service === 'git-receive-pack' && ownBranch === null) {
      return refuse(res, 403, service, 'airlock: an environment build is read-only; it pushes nothing');
    }
    if ((endpoint === 'info/refs') !== (req.method === 'GET')) {
      return refuse(res, 405, service, `airlock: ${req.method} is not allowed on ${endpoint}`, asked);
    }
    if (options.holdPushesIn && service === 'git-receive-pack') {
      if (endpoint === 'git-receive-pack') return receivePack(req, res, undefined, {});
      options.audit.append(options.taskId, 'proxy.git', { service, endpoint, repo, decision: 'held' });
      return serveHeld(req, res, options.holdPushesIn, endpoint, url.search.slice(1));
    }
    const base = readOnly ? readOnly.upstreamUrl(owner, name).replace(/\/+$/, '') : upstreamBase;
    const target = new URL(`${base}/${endpoint}${url.search}`);
    const headers = pickHeaders(req.headers, REQUEST_HEADERS);
    const token = await (readOnly ? readOnly.token() : options.token());
    headers.authorization = `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
    if (endpoint === 'git-receive-pack') return receivePack(req, res, target, headers);
    options.audit.append(options.taskId, 'proxy.git', {
      service,
      endpoint,
      repo: asked,
      decision: 'forwarded',
      ...(readOnly ? { access: 'read' } : {}),
    });
    await forward(req, res, target, headers, req);
  };

  async function receivePack(
    req: IncomingMessage,
    res: ServerResponse,
    target: URL | undefined,
    headers: Record<string, unknown>,
  ): Promise<void> {
    const service = 'git-receive-pack';
    if (ownBranch === null) throw new Error('unreachable: read-only proxies refuse pushes before this');
    let body: Readable = req;
    if (req.headers['content-encoding'] === 'gzip') {
      body = req.pipe(createGunzip());
      delete headers['content-encoding'];
      delete headers['content-length'];
    }
    const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let head = Buffer.alloc(0);
    let commands: ReceivePackCommands | undefined;
    try {
      while (!commands) {
        const next = await iterator.next();
        if (next.done) throw new Error('request ended before the command list was complete');
        head = Buffer.concat([head, next.value]);
        commands = readReceivePackCommands(head);
        if (!commands && head.length > MAX_COMMAND_SECTION_BYTES) throw new Error('command list too long');
      }
    } catch (error) {
      return refuse(res, 400, service, `airlock: unreadable push request: ${errorMessage(error)}`);
    }
    const reasons = new Map<string, string>();
    for (const update of commands.updates) {
      const decision = refUpdateAllowed(update, ownBranch);
      if (!decision.allowed) reasons.set(update.ref, decision.reason);
    }
    if (reasons.size > 0) {
      const message = `airlock: pushes are limited to ${ownBranch}`;
      for (const update of commands.updates) {
        const reason = reasons.get(update.ref) ?? `${message}; refused with the rest of this push`;
        reasons.set(update.ref, reason);
        options.audit.append(options.taskId, 'git.ref_update', {
          ref: update.ref,
          old: update.oldOid,
          new: update.newOid,
          decision: 'refused',
          reason,
        });
      }
      options.log.warn({ taskId: options.taskId, refs: [...reasons.keys()] }, 'push refused');
      res.writeHead(200, {
        'content-type': 'application/x-git-receive-pack-result',
        'cache-control': 'no-cache',
      });
      res.end(refusedPushResponse(commands, reasons, message));
      drain(iterator, req);
      return;
    }
    options.audit.append(options.taskId, 'proxy.git', {
      service,
      repo,
      decision: target ? 'forwarded' : 'held',
    });
    let packBytes = head.length - commands.length;
    const limit = options.maxPackBytes;
    const limiter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        packBytes += chunk.length;
        if (packBytes > limit) callback(new PackTooLarge(limit));
        else callback(null, chunk);
      },
    });
    const rest = async function* () {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    };
    const outcome = target
      ? await forward(req, res, target, headers, rest(), limiter)
      : await receiveHeld(req, res, rest(), limiter);
    if (outcome instanceof PackTooLarge) {
      const message = `airlock: the pushed pack exceeds the limit of ${formatBytes(limit)}`;
      for (const update of commands.updates) reasons.set(update.ref, message);
      options.audit.append(options.taskId, 'proxy.git', {
        service,
        repo,
        decision: 'refused',
        reason: message,
      });
      if (!res.headersSent) {
        res.writeHead(200, { 'content-type': 'application/x-git-receive-pack-result' });
        res.end(refusedPushResponse(commands, reasons, message, 'pack too large'));
      } else res.destroy();
      drain(iterator, req);
      return;
    }
    if (outcome === undefined && res.statusCode === 200) {
      for (const update of commands.updates) {
        // A held update counts once the host sees the branch at the pushed commit.
        if (!target && (await heldRef(options.holdPushesIn as string, update.ref)) !== update.newOid)
          continue;
        options.audit.append(options.taskId, 'git.ref_update', {
          ref: update.ref,
          old: update.oldOid,
          new: update.newOid,
          decision: target ? 'forwarded' : 'held',
        });
      }
    }
  }

  /** Receives a checked push into the held repository; returns the error that stopped it, if any. */
  async function receiveHeld(
    req: IncomingMessage,
    res: ServerResponse,
    body: AsyncIterable<Buffer>,
    limiter: Transform,
  ): Promise<unknown> {
    let failure: unknown;
    const sent = pipeline(Readable.from(body), limiter).catch((error: unknown) => {
      failure = error;
    });
    await serveGit(req, res, {
      projectRoot: path.dirname(options.holdPushesIn as string),
      pathInfo: `/${path.basename(options.holdPushesIn as string)}/git-receive-pack`,
      query: '',
      remoteUser: `airlock-task-${options.taskId}`,
      body: limiter,
    });
    await sent;
    return failure;
  }

  /** Serves the held repository's receive-pack advertisement. */
  async function serveHeld(
    req: IncomingMessage,
    res: ServerResponse,
    repoPath: string,
    endpoint: string,
    query: string,
  ): Promise<void> {
    await serveGit(req, res, {
      projectRoot: path.dirname(repoPath),
      pathInfo: `/${path.basename(repoPath)}/${endpoint}`,
      query,
      remoteUser: `airlock-task-${options.taskId}`,
    });
  }

  /** Streams a request body upstream and the answer back; returns the error that stopped it, if any. */
  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    target: URL,
    headers: Record<string, unknown>,
    body: Readable | AsyncIterable<Buffer>,
    limiter?: Transform,
  ): Promise<unknown> {
    // A pack streamed from the guest cannot be sent twice: it goes on a connection of its own.
    const upstream = upstreamRequest(options.agents, target, req.method ?? 'GET', headers as never, {
      fresh: req.method === 'POST',
    });
    const answered = new Promise<void>((resolve, reject) => {
      upstream.on('response', (upRes) => {
        const status = upRes.statusCode ?? 502;
        if (status === 401 || status === 403) {
          upRes.resume();
          options.log.error({ taskId: options.taskId, status }, 'upstream git refused the task token');
          res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`airlock: the upstream refused the task's credentials (HTTP ${status})\n`);
          return resolve();
        }
        res.writeHead(status, pickHeaders(upRes.headers, RESPONSE_HEADERS));
        pipeline(upRes, res).then(resolve, reject);
      });
      upstream.on('error', reject);
    });
    // When the upload fails first, the answer's later failure is the same event: seen, not lost.
    answered.catch(() => undefined);
    try {
      const sent = limiter ? pipeline(body, limiter, upstream) : pipeline(body, upstream);
      await Promise.all([sent, answered]);
      return undefined;
    } catch (error) {
      upstream.destroy();
      if (error instanceof PackTooLarge) return error;
      options.log.warn({ taskId: options.taskId, err: errorMessage(error) }, 'git proxy request failed');
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`airlock: the upstream git server could not be reached: ${errorMessage(error)}\n`);
      } else res.destroy();
      return error;
    }
  }
}

/** Where a ref of the held repository points, as the host reads it (undefined when absent). */
async function heldRef(repoPath: string, ref: string): Promise<string | undefined> {
  const result = await runProcess('git', ['--git-dir', repoPath, 'rev-parse', '--verify', '--quiet', ref], {
    env: { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    timeoutMs: 30_000,
    okExitCodes: [0, 1],
  });
  return result.exitCode === 0 ? result.stdout.trim() : undefined;
}

class PackTooLarge extends Error {
  constructor(limit: number) {
    super(`pack exceeds ${limit} bytes`);
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1048576 ? `${Math.round(bytes / 1048576)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/**
 * The most of a refused push read and thrown away, and for how long, before the connection is cut.
 * The pack limit protects the upstream; discarding costs the proxy only bandwidth, and a client cut
 * off while it is still sending (HTTP/1.1 sends the whole body first) never reads the refusal.
 */
const DRAIN_MAX_BYTES = 1024 * 1024 * 1024;
const DRAIN_MAX_MS = 60_000;

/**
 * Reads and discards the rest of a refused push so the client finishes sending and reads the
 * refusal; a client that keeps sending past the drain budget is cut off.
 */
function drain(iterator: AsyncIterator<Buffer>, req: IncomingMessage): void {
  let discarded = 0;
  const deadline = setTimeout(() => req.destroy(), DRAIN_MAX_MS);
  deadline.unref();
  (async () => {
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      discarded += next.value.length;
      if (discarded > DRAIN_MAX_BYTES) return void req.destroy();
    }
  })()
    .catch(() => req.destroy())
    .finally(() => clearTimeout(deadline));
}
