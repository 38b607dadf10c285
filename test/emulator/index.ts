import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import { HttpError, requireRepoAccess, tokenFromHeader } from './emulator-auth.ts';
import {
  type CheckRun,
  type Comment,
  EmulatorState,
  type Issue,
  type Permission,
  type Repo,
  type User,
} from './emulator-state.ts';
import { serveGit } from './git-http.ts';
import { branchShaSync, type RouteContext, routes } from './rest-routes.ts';

export type { CheckRun, Comment, Issue, Permission, Repo, User } from './emulator-state.ts';

/** A running GitHub emulator. See README.md for what it emulates. */
export interface GitHubEmulator {
  readonly url: string;
  readonly apiUrl: string;
  readonly webUrl: string;
  readonly app: {
    id: number;
    slug: string;
    privateKey: string;
    webhookSecret: string;
    clientId: string;
    clientSecret: string;
  };
  readonly state: EmulatorState;
  readonly requests: Array<{ method: string; path: string; status: number; at: number }>;
  gitUrl(owner: string, repo: string): string;
  addUser(login: string, options?: { type?: 'User' | 'Bot'; id?: number }): User;
  createRepo(
    owner: string,
    name: string,
    options?: { files?: Record<string, string>; defaultBranch?: string; private?: boolean },
  ): Promise<Repo>;
  installApp(
    account: string,
    options?: { repositories?: string[]; permissions?: Record<string, 'read' | 'write'> },
  ): number;
  setPermission(fullName: string, login: string, permission: Permission): void;
  createIssue(
    fullName: string,
    input: { title: string; body?: string; user: string; labels?: string[] },
  ): Issue;
  addComment(fullName: string, issueNumber: number, input: { body: string; user: string }): Comment;
  /** Adds a CI check run (as another app would) with optional annotations and job log. */
  addCheckRun(
    fullName: string,
    input: {
      name: string;
      headSha: string;
      conclusion: string | null;
      status?: string;
      annotations?: CheckRun['annotations'];
      log?: string;
      appSlug?: string;
    },
  ): CheckRun;
  failNext(
    match: { method?: string; path: RegExp },
    response: { status: number; headers?: Record<string, string>; body?: unknown },
    times?: number,
  ): void;
  branchSha(fullName: string, branch: string): Promise<string | undefined>;
  sendWebhook(
    targetUrl: string,
    event: string,
    payload: unknown,
    options?: { deliveryId?: string; secret?: string },
  ): Promise<Response>;
  close(): Promise<void>;
}

const DEFAULT_PERMISSIONS: Record<string, 'read' | 'write'> = {
  contents: 'write',
  issues: 'write',
  pull_requests: 'write',
  checks: 'write',
  actions: 'read',
  metadata: 'read',
};

/** Starts the emulator on 127.0.0.1 and a free port. */
export async function startGitHubEmulator(options: { appSlug?: string } = {}): Promise<GitHubEmulator> {
  const state = new EmulatorState();
  const root = mkdtempSync(path.join(tmpdir(), 'airlock-gh-'));
  const gitRoot = path.join(root, 'git');
  mkdirSync(gitRoot);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const app = {
    id: 4242,
    slug: options.appSlug ?? 'airlock-test',
    privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    webhookSecret: randomBytes(16).toString('hex'),
    clientId: 'Iv1.emulator',
    clientSecret: randomBytes(16).toString('hex'),
  };
  const failures: Array<{
    method?: string;
    path: RegExp;
    response: { status: number; headers?: Record<string, string>; body?: unknown };
    left: number;
  }> = [];
  const requests: GitHubEmulator['requests'] = [];
  let url = '';

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: String(error) }));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parsed = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const record = (status: number) =>
      requests.push({ method, path: parsed.pathname, status, at: Date.now() });
    const gitMatch = /^\/([^/]+)\/([^/]+?)\.git(\/.*)$/.exec(parsed.pathname);
    if (gitMatch) {
      const fullName = `${gitMatch[1]}/${gitMatch[2]}`;
      const receive =
        parsed.searchParams.get('service') === 'git-receive-pack' || gitMatch[3] === '/git-receive-pack';
      try {
        const repo = state.repos.get(fullName);
        if (!repo) throw new HttpError(404, 'Repository not found');
        const token = tokenFromHeader(state, req.headers.authorization);
        if (!token)
          throw new HttpError(401, 'Authentication required', { 'www-authenticate': 'Basic realm="GitHub"' });
        requireRepoAccess(token, fullName, 'contents', receive ? 'write' : 'read');
        const before = receive && gitMatch[3] === '/git-receive-pack' ? refs(repo) : undefined;
        await serveGit(req, res, {
          projectRoot: gitRoot,
          pathInfo: `/${fullName}.git${gitMatch[3]}`,
          query: parsed.search.slice(1),
          remoteUser: 'x-access-token',
        });
        if (before) {
          const after = refs(repo);
          for (const ref of new Set([...before.keys(), ...after.keys()])) {
            if (before.get(ref) !== after.get(ref)) {
              state.pushes.push({
                repo: fullName,
                ref,
                before: before.get(ref) ?? null,
                after: after.get(ref) ?? null,
                token: token.token,
              });
            }
          }
        }
        record(res.statusCode);
      } catch (error) {
        const e = error instanceof HttpError ? error : new HttpError(500, String(error));
        res.writeHead(e.status, { 'content-type': 'text/plain', ...e.headers }).end(`${e.message}\n`);
        record(e.status);
      }
      return;
    }
    if (parsed.pathname.startsWith('/_logs/')) {
      const run = state.checkRuns.find((r) => r.id === Number(parsed.pathname.slice(7)));
      res.writeHead(run?.log ? 200 : 404, { 'content-type': 'text/plain' }).end(run?.log ?? 'Not Found');
      record(res.statusCode);
      return;
    }
    const apiPath = parsed.pathname.replace(/^\/api\/v3/, '').replace(/^\/api(?=\/graphql)/, '');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const injected = failures.find(
      (f) => f.left > 0 && (!f.method || f.method === method) && f.path.test(apiPath),
    );
    if (injected) {
      injected.left--;
      const body = injected.response.body ?? {
        message:
          injected.response.status === 429 ? 'You have exceeded a secondary rate limit' : 'Server Error',
      };
      res
        .writeHead(injected.response.status, {
          'content-type': 'application/json',
          ...injected.response.headers,
        })
        .end(JSON.stringify(body));
      record(injected.response.status);
      return;
    }
    let body: Record<string, unknown> = {};
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString());
      } catch {
        res
          .writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ message: 'Problems parsing JSON' }));
        record(400);
        return;
      }
    }
    for (const [routeMethod, pattern, handler] of routes) {
      const m = routeMethod === method ? pattern.exec(apiPath) : null;
      if (!m) continue;
      const context: RouteContext = {
        method,
        params: m.slice(1),
        query: parsed.searchParams,
        body,
        authorization: req.headers.authorization,
        token: () => tokenFromHeader(state, req.headers.authorization),
        state,
        app,
        url,
      };
      try {
        const result = await handler(context);
        const status = result.status ?? 200;
        res.writeHead(status, {
          'content-type': 'application/json; charset=utf-8',
          'x-ratelimit-limit': '5000',
          'x-ratelimit-remaining': '4999',
          'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600),
          ...result.headers,
        });
        res.end(result.body === undefined ? '' : JSON.stringify(result.body));
        record(status);
      } catch (error) {
        const e = error instanceof HttpError ? error : new HttpError(500, String(error));
        res.writeHead(e.status, { 'content-type': 'application/json', ...e.headers });
        res.end(JSON.stringify({ message: e.message, documentation_url: 'https://docs.github.com/rest' }));
        record(e.status);
      }
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'Not Found' }));
    record(404);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const refs = (repo: Repo) =>
    new Map(
      execFileSync('git', ['--git-dir', repo.dir, 'for-each-ref', '--format=%(refname) %(objectname)'], {
        encoding: 'utf8',
      })
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]),
    );

  const emulator: GitHubEmulator = {
    url,
    apiUrl: `${url}/api/v3`,
    webUrl: url,
    app,
    state,
    requests,
    gitUrl: (owner, repo) => `${url}/${owner}/${repo}.git`,
    addUser: (login, o = {}) => {
      const user: User = { login, id: o.id ?? state.nextId(), type: o.type ?? 'User' };
      state.users.set(login, user);
      return user;
    },
    createRepo: async (owner, name, o = {}) => {
      const fullName = `${owner}/${name}`;
      const dir = path.join(gitRoot, owner, `${name}.git`);
      const defaultBranch = o.defaultBranch ?? 'main';
      mkdirSync(dir, { recursive: true });
      const env = { ...gitEnv(), GIT_DIR: dir };
      execFileSync('git', ['init', '--bare', '--quiet', `--initial-branch=${defaultBranch}`, dir]);
      execFileSync('git', ['config', 'http.receivepack', 'true'], { env });
      const work = mkdtempSync(path.join(tmpdir(), 'airlock-gh-seed-'));
      try {
        for (const [file, content] of Object.entries(o.files ?? { 'README.md': `# ${name}\n` })) {
          mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
          writeFileSync(path.join(work, file), content);
        }
        const wenv = {
          ...gitEnv(),
          GIT_DIR: dir,
          GIT_WORK_TREE: work,
          GIT_INDEX_FILE: path.join(work, '.git-index'),
        };
        execFileSync('git', ['add', '-A', '.'], { env: wenv, cwd: work });
        execFileSync('git', ['reset', '--quiet', '--', '.git-index'], { env: wenv, cwd: work });
        execFileSync('git', ['commit', '--quiet', '-m', 'Initial commit'], { env: wenv, cwd: work });
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
      const repo: Repo = {
        id: state.nextId(),
        owner,
        name,
        fullName,
        defaultBranch,
        dir,
        private: o.private ?? true,
        fork: false,
      };
      state.repos.set(fullName, repo);
      return repo;
    },
    installApp: (account, o = {}) => {
      const id = state.nextId();
      state.installations.set(id, {
        id,
        account,
        repositories: o.repositories ?? 'all',
        permissions: o.permissions ?? DEFAULT_PERMISSIONS,
      });
      return id;
    },
    setPermission: (fullName, login, permission) => {
      state.permissions.set(`${fullName}:${login}`, permission);
    },
    createIssue: (fullName, input) => {
      const issue: Issue = {
        repo: fullName,
        number: state.nextNumber(fullName),
        title: input.title,
        body: input.body ?? '',
        user: input.user,
        labels: input.labels ?? [],
        state: 'open',
      };
      state.issues.push(issue);
      return issue;
    },
    addComment: (fullName, issueNumber, input) => {
      const now = new Date().toISOString();
      const comment: Comment = {
        id: state.nextId(),
        repo: fullName,
        issueNumber,
        body: input.body,
        user: input.user,
        createdAt: now,
        updatedAt: now,
      };
      state.comments.push(comment);
      return comment;
    },
    addCheckRun: (fullName, input) => {
      const run: CheckRun = {
        id: state.nextId(),
        repo: fullName,
        name: input.name,
        head_sha: input.headSha,
        status: input.status ?? 'completed',
        conclusion: input.conclusion,
        details_url: null,
        output: null,
        app: { slug: input.appSlug ?? 'github-actions' },
        annotations: input.annotations ?? [],
        ...(input.log !== undefined ? { log: input.log } : {}),
      };
      state.checkRuns.push(run);
      return run;
    },
    failNext: (match, response, times = 1) => {
      failures.push({ ...match, response, left: times });
    },
    branchSha: async (fullName, branch) => {
      const repo = state.repos.get(fullName);
      return repo ? branchShaSync(repo, branch) : undefined;
    },
    sendWebhook: async (targetUrl, event, payload, o = {}) => {
      const body = JSON.stringify(payload);
      const signature = await sign(o.secret ?? app.webhookSecret, body);
      return fetch(targetUrl, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': event,
          'x-github-delivery': o.deliveryId ?? randomBytes(8).toString('hex'),
          'x-hub-signature-256': signature,
          'user-agent': 'GitHub-Hookshot/emulator',
        },
      });
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  return emulator;
}

function gitEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmpdir(),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'Emulator',
    GIT_AUTHOR_EMAIL: 'emulator@example.invalid',
    GIT_COMMITTER_NAME: 'Emulator',
    GIT_COMMITTER_EMAIL: 'emulator@example.invalid',
    GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
  };
}
