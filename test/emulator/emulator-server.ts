import type { IncomingMessage, ServerResponse } from 'node:http';
import { serveGit } from '../../src/git/http-backend.ts';
import { HttpError, requireRepoAccess, tokenFromHeader } from './emulator-auth.ts';
import type { EmulatorState } from './emulator-state.ts';
import { listRefs } from './git-cli.ts';
import { routes } from './rest-routes.ts';
import type { RouteContext } from './route-kit.ts';

const DOCS = 'https://docs.github.com/rest';

/** A response to give instead of the real one, `left` more times. */
export interface InjectedFailure {
  method?: string;
  path: RegExp;
  response: { status: number; headers?: Record<string, string>; body?: unknown };
  left: number;
}

/** What the request handler needs from the emulator. */
export interface ServerDeps {
  state: EmulatorState;
  app: RouteContext['app'];
  gitRoot: string;
  failures: InjectedFailure[];
  requests: Array<{ method: string; path: string; status: number; at: number }>;
  urls: () => { url: string; apiUrl: string };
}

function rateLimitHeaders(now: number): Record<string, string> {
  return {
    'x-ratelimit-limit': '5000',
    'x-ratelimit-remaining': '4999',
    'x-ratelimit-used': '1',
    'x-ratelimit-reset': String(Math.floor(now / 1000) + 3600),
    'x-ratelimit-resource': 'core',
    'x-github-media-type': 'github.v3; format=json',
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

/** Handles one request: git smart HTTP, job-log downloads, or REST (after injected failures). */
export async function handleRequest(
  deps: ServerDeps,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const parsed = new URL(req.url ?? '/', 'http://emulator');
  const method = req.method ?? 'GET';
  const record = (status: number) =>
    deps.requests.push({ method, path: parsed.pathname, status, at: Date.now() });
  const injected = deps.failures.find(
    (f) =>
      f.left > 0 &&
      (!f.method || f.method === method) &&
      (f.path.test(parsed.pathname.replace(/^\/api\/v3(?=\/)/, '')) || f.path.test(parsed.pathname)),
  );
  if (injected) {
    injected.left--;
    req.resume();
    const { status, headers, body } = injected.response;
    const message =
      status === 403 || status === 429
        ? 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.'
        : 'Server Error';
    sendJson(res, status, body ?? { message, documentation_url: DOCS }, {
      ...rateLimitHeaders(deps.state.now()),
      ...headers,
    });
    record(status);
    return;
  }
  const gitMatch = /^\/([^/]+)\/([^/]+?)\.git(\/.*)$/.exec(parsed.pathname);
  if (gitMatch) {
    await handleGit(deps, req, res, parsed, gitMatch as unknown as [string, string, string, string]);
    record(res.statusCode);
    return;
  }
  if (parsed.pathname.startsWith('/_logs/')) {
    const run = deps.state.checkRuns.find((r) => r.id === Number(parsed.pathname.slice('/_logs/'.length)));
    req.resume();
    res.writeHead(run?.log !== undefined ? 200 : 404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(run?.log ?? 'Not Found');
    record(res.statusCode);
    return;
  }
  const status = await handleRest(deps, req, res, parsed, method);
  record(status);
}

async function handleRest(
  deps: ServerDeps,
  req: IncomingMessage,
  res: ServerResponse,
  parsed: URL,
  method: string,
): Promise<number> {
  const apiPath = parsed.pathname.replace(/^\/api\/v3(?=\/)/, '').replace(/^\/api(?=\/graphql$)/, '');
  const limits = rateLimitHeaders(deps.state.now());
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let body: Record<string, unknown> = {};
  if (chunks.length) {
    try {
      body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    } catch {
      sendJson(res, 400, { message: 'Problems parsing JSON', documentation_url: DOCS }, limits);
      return 400;
    }
  }
  for (const [routeMethod, pattern, handler] of routes) {
    const m = routeMethod === method ? pattern.exec(apiPath) : null;
    if (!m) continue;
    const { url, apiUrl } = deps.urls();
    const context: RouteContext = {
      method,
      params: m.slice(1),
      query: parsed.searchParams,
      body: body ?? {},
      authorization: req.headers.authorization,
      token: () => tokenFromHeader(deps.state, req.headers.authorization),
      state: deps.state,
      app: deps.app,
      url,
      apiUrl,
    };
    try {
      const result = await handler(context);
      const status = result.status ?? 200;
      sendJson(res, status, result.body, { ...limits, ...result.headers });
      return status;
    } catch (error) {
      const e = error instanceof HttpError ? error : new HttpError(500, String(error));
      sendJson(res, e.status, { message: e.message, documentation_url: DOCS }, { ...limits, ...e.headers });
      return e.status;
    }
  }
  sendJson(res, 404, { message: 'Not Found', documentation_url: DOCS }, limits);
  return 404;
}

async function handleGit(
  deps: ServerDeps,
  req: IncomingMessage,
  res: ServerResponse,
  parsed: URL,
  [, owner, name, rest]: [string, string, string, string],
): Promise<void> {
  const fullName = `${owner}/${name}`;
  const service = parsed.searchParams.get('service');
  const pushing = service === 'git-receive-pack' || rest === '/git-receive-pack';
  try {
    const allowed =
      rest === '/info/refs'
        ? service === 'git-upload-pack' || service === 'git-receive-pack'
        : rest === '/git-upload-pack' || rest === '/git-receive-pack';
    if (!allowed) throw new HttpError(404, 'Not Found');
    const repo = deps.state.repos.get(fullName);
    const token = tokenFromHeader(deps.state, req.headers.authorization);
    if (!token) {
      throw new HttpError(401, 'Authentication required', { 'www-authenticate': 'Basic realm="GitHub"' });
    }
    if (!repo) throw new HttpError(404, 'Repository not found.');
    requireRepoAccess(token, fullName, 'contents', pushing ? 'write' : 'read');
    const before = rest === '/git-receive-pack' ? await listRefs(repo.dir) : undefined;
    const recordPush = async () => {
      if (!before) return;
      const after = await listRefs(repo.dir);
      for (const ref of new Set([...before.keys(), ...after.keys()])) {
        if (before.get(ref) !== after.get(ref)) {
          deps.state.pushes.push({
            repo: fullName,
            ref,
            before: before.get(ref) ?? null,
            after: after.get(ref) ?? null,
            token: token.token,
          });
        }
      }
    };
    await serveGit(req, res, {
      projectRoot: deps.gitRoot,
      pathInfo: `/${owner}/${name}.git${rest}`,
      query: parsed.search.slice(1),
      remoteUser: 'x-access-token',
      beforeEnd: recordPush,
    });
  } catch (error) {
    req.resume();
    const e = error instanceof HttpError ? error : new HttpError(500, String(error));
    if (e.status === 401 && !e.headers['www-authenticate'])
      e.headers['www-authenticate'] = 'Basic realm="GitHub"';
    if (!res.headersSent) res.writeHead(e.status, { 'content-type': 'text/plain', ...e.headers });
    res.end(`${e.message}\n`);
  }
}
