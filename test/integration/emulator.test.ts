import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { verify } from '@octokit/webhooks-methods';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess } from '../../src/process/run-process.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';

let gh: GitHubEmulator;
let installationId: number;

beforeAll(async () => {
  gh = await startGitHubEmulator();
  await gh.createRepo('acme', 'a', { files: { 'a.txt': 'A\n' } });
  await gh.createRepo('acme', 'b');
  installationId = gh.installApp('acme');
});
afterAll(async () => {
  await gh.close();
});

async function mint(options: { repositoryNames?: string[]; permissions?: Record<string, string> } = {}) {
  const auth = createAppAuth({
    appId: gh.app.id,
    privateKey: gh.app.privateKey,
    request: new Octokit({ baseUrl: gh.apiUrl }).request,
  });
  return auth({ type: 'installation', installationId, refresh: true, ...options });
}

describe('GitHub emulator', () => {
  it('mints scoped installation tokens and revokes them', async () => {
    const { token, repositoryNames, permissions } = await mint({
      repositoryNames: ['a'],
      permissions: { contents: 'write' },
    });
    expect(repositoryNames).toEqual(['a']);
    expect(permissions).toMatchObject({ contents: 'write' });
    const octokit = new Octokit({ baseUrl: gh.apiUrl, auth: token });
    expect((await octokit.rest.repos.getContent({ owner: 'acme', repo: 'a', path: 'a.txt' })).status).toBe(
      200,
    );
    await expect(octokit.rest.repos.get({ owner: 'acme', repo: 'b' })).rejects.toMatchObject({ status: 404 });
    await expect(
      octokit.rest.issues.createComment({ owner: 'acme', repo: 'a', issue_number: 1, body: 'x' }),
    ).rejects.toMatchObject({
      status: 403,
    });
    await octokit.request('DELETE /installation/token');
    await expect(octokit.rest.repos.get({ owner: 'acme', repo: 'a' })).rejects.toMatchObject({ status: 401 });
  });

  it('refuses permissions the installation does not have', async () => {
    await expect(mint({ permissions: { administration: 'write' } })).rejects.toMatchObject({ status: 422 });
  });

  it('serves real git over smart HTTP, checking the token on every request', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'emu-git-'));
    try {
      const env = { HOME: dir, GIT_TERMINAL_PROMPT: '0' };
      await expect(
        runProcess('git', ['clone', '-q', gh.gitUrl('acme', 'a'), path.join(dir, 'anon')], {
          env,
          timeoutMs: 20_000,
        }),
      ).rejects.toThrow(/Authentication|401|could not read Username/);
      const { token } = await mint({ repositoryNames: ['a'], permissions: { contents: 'read' } });
      const url = gh.gitUrl('acme', 'a').replace('http://', `http://x-access-token:${token}@`);
      await runProcess('git', ['clone', '-q', url, path.join(dir, 'ro')], { env, timeoutMs: 20_000 });
      const work = path.join(dir, 'ro');
      const genv = {
        ...env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@x',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@x',
      };
      await runProcess('git', ['commit', '-q', '--allow-empty', '-m', 'x'], {
        cwd: work,
        env: genv,
        timeoutMs: 10_000,
      });
      await expect(
        runProcess('git', ['push', '-q', 'origin', 'HEAD:refs/heads/t'], {
          cwd: work,
          env,
          timeoutMs: 20_000,
        }),
      ).rejects.toThrow();
      const { token: writer } = await mint({ repositoryNames: ['a'], permissions: { contents: 'write' } });
      const writeUrl = gh.gitUrl('acme', 'a').replace('http://', `http://x-access-token:${writer}@`);
      await runProcess('git', ['push', '-q', writeUrl, 'HEAD:refs/heads/t'], {
        cwd: work,
        env,
        timeoutMs: 20_000,
      });
      expect(await gh.branchSha('acme/a', 't')).toMatch(/^[0-9a-f]{40}$/);
      expect(gh.state.pushes.at(-1)).toMatchObject({ repo: 'acme/a', ref: 'refs/heads/t', before: null });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('injects failures and signs webhooks GitHub-style', async () => {
    const { token } = await mint();
    const octokit = new Octokit({ baseUrl: gh.apiUrl, auth: token });
    gh.failNext({ path: /^\/repos\/acme\/a$/ }, { status: 502 });
    await expect(octokit.rest.repos.get({ owner: 'acme', repo: 'a' })).rejects.toMatchObject({ status: 502 });
    expect((await octokit.rest.repos.get({ owner: 'acme', repo: 'a' })).status).toBe(200);

    let seen: { body: string; signature: string } | undefined;
    const { createServer } = await import('node:http');
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        seen = { body, signature: String(req.headers['x-hub-signature-256']) };
        res.end('ok');
      });
    }).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    await gh.sendWebhook(`http://127.0.0.1:${port}/`, 'issues', { action: 'opened' });
    server.close();
    expect(await verify(gh.app.webhookSecret, seen!.body, seen!.signature)).toBe(true);
  });
});
