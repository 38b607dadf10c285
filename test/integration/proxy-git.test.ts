import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Octokit } from '@octokit/rest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mintTaskToken, type TaskCredential, taskCredential } from '../../src/github/task-token.ts';
import { runProcess } from '../../src/process/run-process.ts';
import { startTaskProxy, type TaskProxy, type TaskProxyOptions } from '../../src/proxy/task-proxy.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

const BRANCH = 'airlock/task-1';
const LIMIT = 'airlock: pushes are limited to refs/heads/airlock/task-1';

let gh: GitHubEmulator;
let installationId: number;
let credential: TaskCredential;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;
let redactor: SecretRedactor;
let logLines: string[];
let work: string;

beforeEach(async () => {
  gh = await startGitHubEmulator();
  await gh.createRepo('acme', 'widgets', { files: { 'README.md': '# widgets\n' } });
  await gh.createRepo('acme', 'secrets', { files: { 'key.txt': 'private\n' } });
  installationId = gh.installApp('acme');
  audit = new RecordingAudit();
  redactor = new SecretRedactor();
  work = await mkdtemp(path.join(tmpdir(), 'airlock-proxy-git-'));
  credential = taskCredential(
    { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor, audit },
    { taskId: 't1', installationId, repository: { owner: 'acme', name: 'widgets' } },
  );
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await gh.close();
  await rm(work, { recursive: true, force: true });
});

async function start(overrides: Partial<TaskProxyOptions> = {}): Promise<string> {
  const { log, lines } = memoryLogger(redactor);
  logLines = lines;
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: BRANCH,
    listen: { tcp: true },
    gitUrl: gh.gitUrl,
    credential,
    models: {},
    egressAllow: [],
    budgetTokens: 1000,
    onBudgetExceeded: () => {},
    audit,
    log,
    ...overrides,
  });
  return `${proxy.address}/git/acme/widgets.git`;
}

/** Runs git with no credentials configured anywhere, as the agent in the VM does. */
async function git(args: string[], options: { cwd?: string; fail?: boolean } = {}) {
  const result = await runProcess('git', args, {
    cwd: options.cwd ?? work,
    env: {
      HOME: work,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'agent',
      GIT_AUTHOR_EMAIL: 'agent@example.invalid',
      GIT_COMMITTER_NAME: 'agent',
      GIT_COMMITTER_EMAIL: 'agent@example.invalid',
    },
    timeoutMs: 30_000,
    okExitCodes: options.fail ? [1, 128] : [0],
  });
  return result;
}

async function cloneAndCommit(remote: string, file = 'change.txt'): Promise<string> {
  const dir = path.join(work, 'clone');
  await git(['clone', '--quiet', remote, dir]);
  await writeFile(path.join(dir, file), `${randomBytes(8).toString('hex')}\n`);
  await git(['add', '-A'], { cwd: dir });
  await git(['commit', '--quiet', '-m', 'agent change'], { cwd: dir });
  return dir;
}

describe('git through the task proxy', () => {
  it('clones and pushes the task branch (also forced) with a token the client never had', async () => {
    const dir = await cloneAndCommit(await start());
    const head = (await git(['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
    await git(['push', '--quiet', 'origin', `HEAD:${BRANCH}`], { cwd: dir });
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBe(head);

    await git(['commit', '--quiet', '--amend', '-m', 'rewritten'], { cwd: dir });
    const amended = (await git(['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
    await git(['push', '--quiet', '--force', 'origin', `HEAD:${BRANCH}`], { cwd: dir });
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBe(amended);

    const token = await credential.token();
    expect(gh.state.pushes.map((p) => p.token)).toEqual([token, token]);
    const updates = audit.events.filter((e) => e.type === 'git.ref_update').map((e) => e.data);
    expect(updates).toEqual([
      expect.objectContaining({ ref: `refs/heads/${BRANCH}`, new: head, decision: 'forwarded' }),
      expect.objectContaining({
        ref: `refs/heads/${BRANCH}`,
        old: head,
        new: amended,
        decision: 'forwarded',
      }),
    ]);
    expect(audit.types('t1')).toContain('token.minted');
    expect(JSON.stringify(audit.events)).not.toContain(token);
    expect(logLines.join('\n')).not.toContain(token);
  });

  it.each([
    ['the default branch', 'HEAD:main', 'refs/heads/main'],
    ['another branch', 'HEAD:feature', 'refs/heads/feature'],
    ['another airlock branch', 'HEAD:airlock/task-2', 'refs/heads/airlock/task-2'],
    ['a tag', 'HEAD:refs/tags/v1', 'refs/tags/v1'],
  ])('refuses a push to %s with a message git prints', async (_name, refspec, ref) => {
    const dir = await cloneAndCommit(await start());
    const before = await gh.branchSha('acme/widgets', 'main');
    const result = await git(['push', 'origin', refspec], { cwd: dir, fail: true });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(LIMIT);
    expect(result.stderr).toContain('[remote rejected]');
    expect(await gh.branchSha('acme/widgets', 'main')).toBe(before);
    expect(gh.state.pushes).toEqual([]);
    expect(audit.events).toContainEqual(
      expect.objectContaining({
        type: 'git.ref_update',
        data: expect.objectContaining({ ref, decision: 'refused' }),
      }),
    );
  });

  it('refuses deleting the task branch, and a push that mixes the task branch with another ref', async () => {
    const dir = await cloneAndCommit(await start());
    await git(['push', '--quiet', 'origin', `HEAD:${BRANCH}`], { cwd: dir });
    const pushed = await gh.branchSha('acme/widgets', BRANCH);
    const deletion = await git(['push', 'origin', `:${BRANCH}`], { cwd: dir, fail: true });
    expect(deletion.stderr).toContain(`${LIMIT}; deleting refs/heads/${BRANCH} is not allowed`);
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBe(pushed);

    await git(['commit', '--quiet', '--allow-empty', '-m', 'more'], { cwd: dir });
    const mixed = await git(['push', 'origin', `HEAD:${BRANCH}`, 'HEAD:main'], { cwd: dir, fail: true });
    expect(mixed.stderr).toContain(LIMIT);
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBe(pushed);
    expect(gh.state.pushes).toHaveLength(1);
  });

  it('serves an environment build read-only: it clones, and every push is refused before anything goes upstream', async () => {
    const dir = await cloneAndCommit(await start({ branch: null }));
    for (const target of [BRANCH, 'main']) {
      const push = await git(['push', 'origin', `HEAD:${target}`], { cwd: dir, fail: true });
      expect(push.stderr).toContain('airlock: an environment build is read-only; it pushes nothing');
    }
    expect(gh.state.pushes).toHaveLength(0);
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBeUndefined();
    expect(audit.events.filter((e) => e.type === 'proxy.git' && e.data.decision === 'refused')).toHaveLength(
      2,
    );
  });

  it('ignores a forged Authorization header from the client', async () => {
    const other = await mintTaskToken(
      { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor },
      { installationId, repository: { owner: 'acme', name: 'widgets' } },
    );
    const remote = await start();
    const forged = `Authorization: Basic ${Buffer.from(`x-access-token:${other.token}`).toString('base64')}`;
    const dir = path.join(work, 'clone');
    await git(['-c', `http.extraHeader=${forged}`, 'clone', '--quiet', remote, dir]);
    await git(['commit', '--quiet', '--allow-empty', '-m', 'x'], { cwd: dir });
    await git(['-c', `http.extraHeader=${forged}`, 'push', '--quiet', 'origin', `HEAD:${BRANCH}`], {
      cwd: dir,
    });
    expect(gh.state.pushes).toHaveLength(1);
    expect(gh.state.pushes[0]!.token).toBe(await credential.token());
    expect(gh.state.pushes[0]!.token).not.toBe(other.token);

    // A garbage credential is not passed on either (the emulator would answer 401 to it).
    const junk = `Authorization: Bearer forged-${randomBytes(8).toString('hex')}`;
    await git(['-c', `http.extraHeader=${junk}`, 'ls-remote', remote], { cwd: dir });
  });

  it('answers a large refused push promptly, without sending it upstream', async () => {
    const dir = await cloneAndCommit(await start());
    await writeFile(path.join(dir, 'big.bin'), randomBytes(16 * 1024 * 1024));
    await git(['add', '-A'], { cwd: dir });
    await git(['commit', '--quiet', '-m', 'big'], { cwd: dir });
    const result = await git(['push', 'origin', 'HEAD:main'], { cwd: dir, fail: true });
    expect(result.stderr).toContain(LIMIT);
    expect(gh.state.pushes).toEqual([]);
    // The listener still serves the same client afterwards.
    await git(['push', '--quiet', 'origin', `HEAD:${BRANCH}`], { cwd: dir });
    expect(gh.state.pushes).toHaveLength(1);
  });

  it('serves only the task repository', async () => {
    const remote = await start();
    const result = await git(['clone', remote.replace('widgets', 'secrets'), path.join(work, 's')], {
      fail: true,
    });
    expect(result.stderr).toContain('airlock: this task can only reach acme/widgets');
    expect(audit.events).toContainEqual(
      expect.objectContaining({ type: 'proxy.git', data: expect.objectContaining({ decision: 'refused' }) }),
    );
  });

  it('fetches other repositories it is granted read-only, with a token scoped to them, and never pushes there', async () => {
    await gh.createRepo('acme', 'unrelated', { files: { 'x.txt': 'x\n' } });
    const readCredential = taskCredential(
      { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor, audit },
      { taskId: 't1', installationId, repository: { owner: 'acme', name: 'widgets' }, readOnly: ['secrets'] },
    );
    const remote = await start({ readRepositories: { names: ['acme/secrets'], credential: readCredential } });
    const dir = path.join(work, 'dependency');
    await git(['clone', '--quiet', remote.replace('widgets', 'secrets'), dir]);
    expect((await git(['show', 'HEAD:key.txt'], { cwd: dir })).stdout).toBe('private\n');

    // The token that read it covers that repository alone, with contents: read.
    const readToken = await readCredential.token();
    const minted = gh.state.tokens.find((t) => t.token === readToken);
    expect(minted).toMatchObject({
      repositories: ['acme/secrets'],
      permissions: { contents: 'read', metadata: 'read' },
    });

    // Pushing there is refused by the proxy before anything goes upstream, whatever the branch.
    await git(['commit', '--quiet', '--allow-empty', '-m', 'x'], { cwd: dir });
    for (const refspec of ['HEAD:main', `HEAD:${BRANCH}`]) {
      const push = await git(['push', 'origin', refspec], { cwd: dir, fail: true });
      expect(push.stderr).toContain('airlock: acme/secrets is read-only for this task');
    }
    expect(gh.state.pushes).toEqual([]);
    // A repository not granted stays out of reach.
    const other = await git(['clone', remote.replace('widgets', 'unrelated'), path.join(work, 'u')], {
      fail: true,
    });
    expect(other.stderr).toContain('airlock: this task can only reach acme/widgets (and read acme/secrets)');

    const closed = await proxy!.close();
    expect(closed.tokenRevoked).toBe(true);
    expect(gh.state.tokens.find((t) => t.token === readToken)?.revoked).toBe(true);
    expect(JSON.stringify(audit.events)).not.toContain(readToken);
  });

  it('caps the pack size of a push', async () => {
    const dir = await cloneAndCommit(await start({ maxPackBytes: 64 * 1024 }));
    await writeFile(path.join(dir, 'big.bin'), randomBytes(8 * 1024 * 1024));
    await git(['add', '-A'], { cwd: dir });
    await git(['commit', '--quiet', '-m', 'big'], { cwd: dir });
    const result = await git(['push', 'origin', `HEAD:${BRANCH}`], { cwd: dir, fail: true });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('airlock: the pushed pack exceeds the limit of 64 KiB');
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBeUndefined();
  });

  it('listens on a 0600 unix socket, and close() removes it and revokes the token', async () => {
    const socketPath = path.join(work, 'task-t1', 'proxy.sock');
    await start({ listen: { socketPath } });
    expect(proxy!.address).toBe(socketPath);
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(socketPath))).mode & 0o777).toBe(0o700);
    const status = await new Promise<number>((resolve, reject) => {
      request({ socketPath, path: '/git/acme/widgets.git/info/refs?service=git-upload-pack' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    expect(status).toBe(200);
    const token = await credential.token();
    // close() reports what it checked, and says the same when called again.
    expect(await proxy!.close()).toEqual({ listenerClosed: true, tokenRevoked: true });
    expect(await proxy!.close()).toEqual({ listenerClosed: true, tokenRevoked: true });
    await expect(stat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(audit.types('t1')).toContain('token.revoked');
    const octokit = new Octokit({ baseUrl: gh.apiUrl, auth: token });
    await expect(octokit.rest.repos.get({ owner: 'acme', repo: 'widgets' })).rejects.toMatchObject({
      status: 401,
    });
  });

  it('refuses a signed push (a push certificate), even for the task branch, before anything goes upstream', async () => {
    const remote = await start();
    const main = (await gh.branchSha('acme/widgets', 'main'))!;
    const zero = '0'.repeat(40);
    const body = Buffer.concat([
      pkt('push-cert\0report-status side-band-64k agent=git/2\n'),
      pkt('certificate version 0.1\n'),
      pkt('pusher agent <agent@example.invalid> 1700000000 +0000\n'),
      pkt(`pushee ${remote}\n`),
      pkt('nonce 1700000000-abcdef\n'),
      pkt('\n'),
      pkt(`${zero} ${main} refs/heads/${BRANCH}\n`),
      pkt('-----BEGIN PGP SIGNATURE-----\n'),
      pkt('iQEzBAABCAAdFiEE\n'),
      pkt('-----END PGP SIGNATURE-----\n'),
      pkt('push-cert-end\n'),
      Buffer.from('0000'),
      Buffer.from('PACK'),
    ]);
    const answer = await postReceivePack(remote, body);
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('airlock: unreadable push request');
    expect(gh.state.pushes).toEqual([]);
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBeUndefined();
    expect(audit.events).toContainEqual(
      expect.objectContaining({
        type: 'proxy.git',
        data: expect.objectContaining({ service: 'git-receive-pack', decision: 'refused' }),
      }),
    );
  });

  it.each([
    ['a length that is not hex', () => Buffer.from('zz10not a pkt-line at all')],
    [
      'a line that is not a ref update',
      () => Buffer.concat([pkt('please push everything\n'), Buffer.from('0000')]),
    ],
    ['a packet too short to hold its length', () => Buffer.from('0002')],
    [
      'capabilities after the first command',
      (main: string) =>
        Buffer.concat([
          pkt(`${main} ${main} refs/heads/${BRANCH}\n`),
          pkt(`${main} ${main} refs/heads/main\0report-status\n`),
          Buffer.from('0000'),
        ]),
    ],
    [
      'a command list cut off before its flush',
      (main: string) => pkt(`${'0'.repeat(40)} ${main} refs/heads/${BRANCH}\n`),
    ],
  ])('refuses a malformed push request (%s) before anything goes upstream', async (_name, build) => {
    const remote = await start();
    const main = (await gh.branchSha('acme/widgets', 'main'))!;
    const answer = await postReceivePack(remote, build(main));
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('airlock: unreadable push request');
    expect(gh.state.pushes).toEqual([]);
    expect(await gh.branchSha('acme/widgets', 'main')).toBe(main);
  });

  it('refuses a push request whose gzip body does not decompress', async () => {
    const remote = await start();
    const answer = await postReceivePack(remote, Buffer.from('definitely not gzip'), {
      'content-encoding': 'gzip',
    });
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('airlock: unreadable push request');
    expect(gh.state.pushes).toEqual([]);
  });
});

/** One pkt-line: four hex digits of length (counting themselves), then the payload. */
function pkt(payload: string): Buffer {
  const data = Buffer.from(payload);
  return Buffer.concat([Buffer.from((data.length + 4).toString(16).padStart(4, '0')), data]);
}

/** POSTs a hand-made receive-pack request through the proxy, as a hostile client in the VM could. */
function postReceivePack(
  remote: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${remote}/git-receive-pack`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-git-receive-pack-request', ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('git through the task proxy, holding pushes on the host (approval.before_push)', () => {
  it('receives the task branch into the held repository: nothing goes upstream and the token is not used for it', async () => {
    const held = path.join(work, 'held', 't1.git');
    await runProcess('git', ['init', '--quiet', '--bare', held], { timeoutMs: 30_000 });
    let tokenAsked = 0;
    const counting: TaskCredential = {
      token: () => {
        tokenAsked++;
        return credential.token();
      },
      revoke: () => credential.revoke(),
    };
    const dir = await cloneAndCommit(await start({ holdPushesIn: held, credential: counting }));
    const head = (await git(['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
    const askedForClone = tokenAsked;
    expect(askedForClone).toBeGreaterThan(0);
    await git(['push', '--quiet', 'origin', `HEAD:${BRANCH}`], { cwd: dir });

    const there = await runProcess('git', ['--git-dir', held, 'rev-parse', `refs/heads/${BRANCH}`], {
      timeoutMs: 30_000,
    });
    expect(there.stdout.trim()).toBe(head);
    expect(await gh.branchSha('acme/widgets', BRANCH)).toBeUndefined();
    expect(gh.state.pushes).toEqual([]);
    const updates = audit.events.filter((e) => e.type === 'git.ref_update').map((e) => e.data);
    expect(updates).toEqual([
      expect.objectContaining({ ref: `refs/heads/${BRANCH}`, new: head, decision: 'held' }),
    ]);
    // The clone needed the token; the held push never asked for it.
    expect(tokenAsked).toBe(askedForClone);

    // The same ref checks apply: main is refused and stays untouched, in the held repository too.
    const refused = await git(['push', 'origin', 'HEAD:main'], { cwd: dir, fail: true });
    expect(refused.stderr).toContain(LIMIT);
    const main = await runProcess(
      'git',
      ['--git-dir', held, 'rev-parse', '--verify', '--quiet', 'refs/heads/main'],
      {
        timeoutMs: 30_000,
        okExitCodes: [0, 1],
      },
    );
    expect(main.exitCode).toBe(1);
  });
});
