import { spawn } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runProcess } from '../process/run-process.ts';

const STDERR_KEEP_BYTES = 4096;

/**
 * Serves one smart-HTTP git request with `git http-backend` (CGI), streaming both bodies with
 * backpressure. `projectRoot` holds the bare repositories; `pathInfo` is `/owner/name.git/...`.
 * A gzip request body (as git sends it) is passed through: http-backend inflates it itself.
 */
export async function serveGit(
  req: IncomingMessage,
  res: ServerResponse,
  options: {
    projectRoot: string;
    pathInfo: string;
    query: string;
    remoteUser: string;
    /** More environment for the backend (for example `GIT_CONFIG_*` settings for this request). */
    env?: Record<string, string>;
    /** Runs after the backend exits and before the response ends, so the client sees its effects. */
    beforeEnd?: () => Promise<void>;
    /**
     * The request body, when the caller has read part of `req` already (it is then sent as is:
     * inflated, of unknown length). Defaults to `req` itself.
     */
    body?: AsyncIterable<Buffer> | NodeJS.ReadableStream;
  },
): Promise<void> {
  const backend = path.join(await gitExecPath(), 'git-http-backend');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    GIT_PROJECT_ROOT: options.projectRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    PATH_INFO: options.pathInfo,
    QUERY_STRING: options.query,
    REQUEST_METHOD: req.method ?? 'GET',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    REMOTE_USER: options.remoteUser,
    REMOTE_ADDR: '127.0.0.1',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    HOME: options.projectRoot,
    ...options.env,
  };
  if (!options.body && req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  if (!options.body && req.headers['content-encoding'])
    env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
  if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
  await new Promise<void>((resolve) => {
    const child = spawn(backend, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let head = Buffer.alloc(0);
    let headersDone = false;
    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;
      if (headersDone) await options.beforeEnd?.().catch(() => {});
      if (!headersDone && !res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(headersDone ? undefined : `git http-backend failed: ${stderr.trim()}\n`);
      resolve();
    };
    if (options.body) {
      pipeline(options.body, child.stdin).catch(() => {
        if (!finished) child.kill('SIGKILL');
      });
    } else {
      req.pipe(child.stdin);
      child.stdin.on('error', () => req.resume());
    }
    // A client that goes away must not leave the backend running.
    res.on('close', () => {
      if (!finished) child.kill('SIGKILL');
    });
    const write = (chunk: Buffer) => {
      if (!res.write(chunk)) {
        child.stdout.pause();
        res.once('drain', () => child.stdout.resume());
      }
    };
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return write(chunk);
      head = Buffer.concat([head, chunk]);
      const crlf = head.indexOf('\r\n\r\n');
      const lf = head.indexOf('\n\n');
      const cut = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
      if (cut < 0) return;
      const sep = cut === crlf ? 4 : 2;
      let status = 200;
      for (const line of head.subarray(0, cut).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      headersDone = true;
      write(head.subarray(cut + sep));
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-STDERR_KEEP_BYTES);
    });
    child.on('error', (error) => {
      stderr += String(error);
      void finish();
    });
    child.on('close', () => void finish());
  });
}

let cachedExecPath: string | undefined;
async function gitExecPath(): Promise<string> {
  cachedExecPath ??= (await runProcess('git', ['--exec-path'], { timeoutMs: 10_000 })).stdout.trim();
  return cachedExecPath;
}
