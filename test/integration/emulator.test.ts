import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { verify } from '@octokit/webhooks-methods';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess } from '../../src/process/run-process.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let gh: GitHubEmulator;
let installationId: number;
let clock = Date.now();

beforeAll(async () => {
  gh = await startGitHubEmulator({ now: () => clock });
  await gh.createRepo('acme', 'a', { files: { 'a.txt': 'A\n', 'dir/b.txt': 'B\n' } });
  await gh.createRepo('acme', 'b');
  installationId = gh.installApp('acme');
});
afterAll(async () => {
  await gh.close();
});

const octokit = (auth?: string) => new Octokit({ baseUrl: gh.apiUrl, auth, log: quiet });

async function mint(options: { repositoryNames?: string[]; permissions?: Record<string, string> } = {}) {
  const auth = createAppAuth({ appId: gh.app.id, privateKey: gh.app.privateKey, request: octokit().request });
  return auth({ type: 'installation', installationId, refresh: true, ...options });
}

const statusOf = (p: Promise<{ status: number }>) =>
  p.then(
    (r) => r.status,
    (e: { status?: number }) => e.status ?? -1,
  );

describe('GitHub emulator: app authentication and tokens', () => {
  it('answers GET /app for a JWT signed by the app key, 401 otherwise', async () => {
    const auth = createAppAuth({ appId: gh.app.id, privateKey: gh.app.privateKey });
    const { token: jwt } = await auth({ type: 'app' });
    const { data } = await octokit(jwt).rest.apps.getAuthenticated();
    expect(data).toMatchObject({ id: gh.app.id, slug: gh.app.slug });
    const { generateKeyPairSync } = await import('node:crypto');
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs1',
      format: 'pem',
    });
    const forged = await createAppAuth({ appId: gh.app.id, privateKey: String(other) })({ type: 'app' });
    expect(await statusOf(octokit(forged.token).rest.apps.getAuthenticated())).toBe(401);
    expect(await statusOf(octokit().rest.apps.getAuthenticated())).toBe(401);
    const { data: inst } = await octokit(jwt).rest.apps.getRepoInstallation({ owner: 'acme', repo: 'a' });
    expect(inst.id).toBe(installationId);
  });

  it('mints scoped installation tokens, enforces scope, and revokes them', async () => {
    const { token, repositoryNames, permissions } = await mint({
      repositoryNames: ['a'],
      permissions: { contents: 'write' },
    });
    expect(token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
    expect(repositoryNames).toEqual(['a']);
    expect(permissions).toEqual({ contents: 'write', metadata: 'read' });
    const client = octokit(token);
    const file = await client.rest.repos.getContent({ owner: 'acme', repo: 'a', path: 'a.txt' });
    expect(Buffer.from((file.data as { content: string }).content, 'base64').toString()).toBe('A\n');
    expect(await statusOf(client.rest.repos.getContent({ owner: 'acme', repo: 'a', path: 'nope' }))).toBe(
      404,
    );
    expect(await statusOf(client.rest.repos.get({ owner: 'acme', repo: 'b' }))).toBe(404);
    const comment = client.rest.issues.createComment({
      owner: 'acme',
      repo: 'a',
      issue_number: 1,
      body: 'x',
    });
    expect(await statusOf(comment)).toBe(403);
    await client.request('DELETE /installation/token');
    expect(await statusOf(client.rest.repos.get({ owner: 'acme', repo: 'a' }))).toBe(401);
  });

  it('refuses to mint beyond the installation: unknown repository, missing or higher permission', async () => {
    await expect(mint({ permissions: { administration: 'write' } })).rejects.toMatchObject({ status: 422 });
    await expect(mint({ repositoryNames: ['missing'] })).rejects.toMatchObject({ status: 422 });
    const limited = gh.installApp('acme', { permissions: { contents: 'read' } });
    const auth = createAppAuth({
      appId: gh.app.id,
      privateKey: gh.app.privateKey,
      request: octokit().request,
    });
    const ask = (permissions: Record<string, string>) =>
      auth({ type: 'installation', installationId: limited, refresh: true, permissions });
    await expect(ask({ contents: 'write' })).rejects.toMatchObject({ status: 422 });
    await expect(ask({ issues: 'write' })).rejects.toMatchObject({ status: 422 });
    expect((await ask({ contents: 'read' })).permissions).toEqual({ contents: 'read', metadata: 'read' });
  });

  it('expires tokens after an hour', async () => {
    const { token, expiresAt } = await mint({ repositoryNames: ['a'] });
    expect(Date.parse(expiresAt) - clock).toBeGreaterThan(59 * 60_000);
    expect(await statusOf(octokit(token).rest.repos.get({ owner: 'acme', repo: 'a' }))).toBe(200);
    clock += 3600_000;
    try {
      expect(await statusOf(octokit(token).rest.repos.get({ owner: 'acme', repo: 'a' }))).toBe(401);
    } finally {
      clock -= 3600_000;
    }
  });
});

describe('GitHub emulator: git smart HTTP', () => {
  it('clones and pushes with a token, checking scope and permission on every request', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'emu-git-'));
    const env = {
      HOME: dir,
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@x',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@x',
    };
    const git = (args: string[], cwd = dir) => runProcess('git', args, { cwd, env, timeoutMs: 20_000 });
    const withToken = (token: string, repo = 'a') =>
      gh.gitUrl('acme', repo).replace('http://', `http://x-access-token:${token}@`);
    try {
      await expect(git(['clone', '-q', gh.gitUrl('acme', 'a'), 'anon'])).rejects.toThrow(
        /Authentication|401|could not read Username/,
      );
      const { token: other } = await mint({ repositoryNames: ['b'], permissions: { contents: 'write' } });
      await expect(git(['clone', '-q', withToken(other, 'a'), 'wrong'])).rejects.toThrow(/not found|404/i);
      const { token: reader } = await mint({ repositoryNames: ['a'], permissions: { contents: 'read' } });
      // The header form, as the credential proxy sends it.
      const basic = Buffer.from(`x-access-token:${reader}`).toString('base64');
      await git([
        '-c',
        `http.extraHeader=Authorization: Basic ${basic}`,
        'clone',
        '-q',
        gh.gitUrl('acme', 'a'),
        'ro',
      ]);
      const work = path.join(dir, 'ro');
      await git(['commit', '-q', '--allow-empty', '-m', 'x'], work);
      await expect(git(['push', '-q', 'origin', 'HEAD:refs/heads/t'], work)).rejects.toThrow();
      expect(await gh.branchSha('acme/a', 't')).toBeUndefined();
      const { token: writer } = await mint({ repositoryNames: ['a'], permissions: { contents: 'write' } });
      await git(['push', '-q', withToken(writer), 'HEAD:refs/heads/t'], work);
      const head = (await git(['rev-parse', 'HEAD'], work)).stdout.trim();
      expect(await gh.branchSha('acme/a', 't')).toBe(head);
      expect(gh.state.pushes.at(-1)).toEqual({
        repo: 'acme/a',
        ref: 'refs/heads/t',
        before: null,
        after: head,
        token: writer,
      });
      expect(
        gh.requests.filter((r) => r.path.endsWith('/git-receive-pack') && r.status === 200),
      ).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('GitHub emulator: failures and webhooks', () => {
  it('injects a failure once, then answers normally with rate-limit headers', async () => {
    const { token } = await mint();
    const client = octokit(token);
    gh.failNext({ path: /^\/repos\/acme\/a$/ }, { status: 502 });
    expect(await statusOf(client.rest.repos.get({ owner: 'acme', repo: 'a' }))).toBe(502);
    const ok = await client.rest.repos.get({ owner: 'acme', repo: 'a' });
    expect(ok.status).toBe(200);
    expect(ok.headers['x-ratelimit-remaining']).toBe('4999');
    gh.failNext(
      { method: 'GET', path: /^\/repos\/acme\/a$/ },
      { status: 403, headers: { 'retry-after': '1' } },
    );
    const limited = await client.rest.repos.get({ owner: 'acme', repo: 'a' }).catch((e: unknown) => e);
    expect(limited).toMatchObject({ status: 403, response: { headers: { 'retry-after': '1' } } });
    expect(String((limited as Error).message)).toMatch(/secondary rate limit/);
  });

  it('signs webhooks so that @octokit/webhooks-methods verifies them', async () => {
    const seen: Array<{ body: string; headers: Record<string, unknown> }> = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        seen.push({ body, headers: req.headers });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const response = await gh.sendWebhook(target, 'issues', { action: 'opened' }, { deliveryId: 'd-1' });
      expect(response.status).toBe(200);
      await gh.sendWebhook(target, 'issues', { action: 'opened' }, { signature: 'sha256=00' });
    } finally {
      server.close();
    }
    const [first, forged] = seen;
    expect(first!.headers).toMatchObject({
      'x-github-event': 'issues',
      'x-github-delivery': 'd-1',
      'content-type': 'application/json',
    });
    expect(
      await verify(gh.app.webhookSecret, first!.body, String(first!.headers['x-hub-signature-256'])),
    ).toBe(true);
    expect(
      await verify(gh.app.webhookSecret, forged!.body, String(forged!.headers['x-hub-signature-256'])),
    ).toBe(false);
  });
});
