import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import type { EnvironmentRecord } from '../../src/environments/environment-store.ts';
import {
  FOR_EACH_REF_FORMAT,
  parseWorkspaceRefs,
  type WorkspaceRefs,
} from '../../src/environments/workspace-refs.ts';
import { GitMirrors } from '../../src/git/git-mirrors.ts';
import { type LocalGitServer, startLocalGitServer } from '../../src/local/local-git-server.ts';
import { runProcess } from '../../src/process/run-process.ts';
import type { GuestExec } from '../../src/sandbox/sandbox.ts';
import {
  applyHostDelta,
  INLINE_FILES_MAX_BYTES,
  MAX_HOST_DELTA_BYTES,
  MAX_HOST_DELTA_OBJECT_BYTES,
  prepareHostDelta,
} from '../../src/tasks/restored-workspace.ts';
import type { Task } from '../../src/tasks/task.ts';
import { workspaceSteps } from '../../src/tasks/workspace-steps.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { taskFixture } from '../helpers/task-fixture.ts';

// The host's way of bringing a restored workspace up to date (a mirror, a pack, one command in the
// workspace) against the guest's (`git fetch --prune origin` and a checkout), on twin clones of a
// repository served over smart HTTP with a secret, as upstream is: both must leave the same refs,
// HEAD, tracking config, FETCH_HEAD and files. The workspace command runs here with real git, the
// way the guest agent runs it (the real-VM tests in test/e2e/environments.test.ts run it in a VM).

let dir: string;
let upstream: string;
let server: LocalGitServer;
let url: string;
let header: string;
const { log } = memoryLogger();

const IDENTITY = {
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

async function git(cwd: string, ...args: string[]): Promise<string> {
  // The header goes in the environment, as the host's own git gets it, so no command line of the
  // test's git processes holds the token either (the argv test below watches every git process).
  const result = await runProcess('git', args, {
    cwd,
    env: {
      HOME: dir,
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.extraHeader',
      GIT_CONFIG_VALUE_0: header,
      ...IDENTITY,
    },
    timeoutMs: 60_000,
  });
  return result.stdout;
}

/** Commits `files` on `branch` of the upstream (made from `from` when new), returns the sha. */
async function commit(
  branch: string,
  files: Record<string, string | Buffer>,
  from = branch,
): Promise<string> {
  const work = await mkdtemp(path.join(dir, 'work-'));
  await git(work, 'clone', '--quiet', upstream, '.');
  await git(work, 'checkout', '--quiet', '-B', branch, `origin/${from}`);
  for (const [file, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(work, file)), { recursive: true });
    await writeFile(path.join(work, file), content);
  }
  await git(work, 'add', '-A');
  await git(work, 'commit', '--quiet', '-m', `change ${branch}`);
  await git(work, 'push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`);
  const sha = (await git(work, 'rev-parse', 'HEAD')).trim();
  await rm(work, { recursive: true, force: true });
  return sha;
}

/** A clone as an environment's build leaves it: cloned, its refs read, setup's untracked files. */
async function buildWorkspace(name: string): Promise<{ repo: string; refs: WorkspaceRefs; commit: string }> {
  const repo = path.join(dir, name);
  await git(dir, 'clone', '--quiet', url, repo);
  const [commitSha = '', head = ''] = (
    await git(repo, 'rev-parse', 'HEAD', '--symbolic-full-name', 'HEAD')
  ).split('\n');
  const refs = parseWorkspaceRefs(head, await git(repo, 'for-each-ref', `--format=${FOR_EACH_REF_FORMAT}`));
  if (!refs) throw new Error('the clone has no readable refs');
  await mkdir(path.join(repo, 'node_modules', 'dep'), { recursive: true });
  await writeFile(path.join(repo, 'node_modules', 'dep', 'index.js'), 'installed\n');
  return { repo, refs, commit: commitSha };
}

/** The guest agent's exec and writeFile, run on this host (uid ignored: one user here). */
const hereVm = {
  async exec(
    request: GuestExec,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
  ): Promise<{ code: number | null; signal: string | null; durationMs: number }> {
    const [file, ...args] = request.argv as [string, ...string[]];
    const result = await runProcess(file, args, {
      ...(request.cwd ? { cwd: request.cwd } : {}),
      env: request.env ?? {},
      ...(request.stdin !== undefined ? { input: request.stdin } : {}),
      timeoutMs: 60_000,
      okExitCodes: Array.from({ length: 256 }, (_, i) => i),
    });
    onOutput?.('stdout', result.stdout);
    onOutput?.('stderr', result.stderr);
    return { code: result.exitCode, signal: null, durationMs: result.durationMs };
  },
  async writeFile(file: string, content: string | Buffer, options: { mode?: number } = {}): Promise<void> {
    await rm(file, { force: true });
    await writeFile(file, content, { mode: options.mode ?? 0o644 });
  },
};

function environment(built: { refs: WorkspaceRefs; commit: string }): EnvironmentRecord {
  return {
    id: 'env-1',
    repoFullName: 'local/widgets',
    buildId: 'build-1',
    specHash: 's',
    envKey: 'k',
    commitSha: built.commit,
    dir: '/unused',
    sizeBytes: 0,
    state: 'ready',
    createdAt: '2026-01-01T00:00:00.000Z',
    lastUsedAt: '2026-01-01T00:00:00.000Z',
    collectedAt: null,
    collectedWhy: null,
    workspaceRefs: built.refs,
    host: null,
  };
}

/** One git process seen by {@link PROC_SAMPLER}: its command line and environment, NUL-separated. */
interface SampledGit {
  cmdline: string;
  environ: string;
}

/** Prints every git process it sees in /proc (once per process), as JSON lines, until killed. */
const PROC_SAMPLER = `
const fs = require('node:fs');
const printed = new Set();
for (;;) {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid) || printed.has(pid)) continue;
    try {
      if (!fs.readFileSync('/proc/' + pid + '/comm', 'utf8').startsWith('git')) continue;
      const cmdline = fs.readFileSync('/proc/' + pid + '/cmdline', 'latin1');
      const environ = fs.readFileSync('/proc/' + pid + '/environ', 'latin1');
      if (!cmdline) continue;
      printed.add(pid);
      process.stdout.write(JSON.stringify({ cmdline, environ }) + '\\n');
    } catch {}
  }
}
`;

/** The host's path on `repo`: the delta prepared from `mirrors`, applied with one command. */
async function hostPath(
  mirrors: GitMirrors,
  task: Task,
  built: { repo: string; refs: WorkspaceRefs; commit: string },
) {
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];
  const delta = await prepareHostDelta(
    { mirrors, audit: { append: (_id, type, data) => events.push({ type, data }) } },
    {
      task,
      env: environment(built),
      url,
      token: () => server.credential.token(),
      remote: url,
      signal: new AbortController().signal,
    },
  );
  if ('fallback' in delta) return { fallback: delta.fallback, events };
  const applied = await applyHostDelta({ vm: hereVm, repoDir: built.repo, uid: 0 }, delta, {
    HOME: dir,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    ...IDENTITY,
  });
  return { applied, delta, events };
}

/** Today's path on `repo`: the guest's fetch and checkout. */
async function guestPath(repo: string, branch: string, from: string): Promise<void> {
  await git(repo, 'fetch', '--quiet', '--prune', 'origin');
  await git(repo, 'checkout', '--quiet', '--force', '-B', branch, from);
}

/** What a task's agent sees of a workspace's repository. */
async function seen(repo: string) {
  return {
    refs: await git(repo, 'for-each-ref', '--format=%(objectname) %(refname) %(symref)'),
    head: await git(repo, 'symbolic-ref', 'HEAD'),
    commit: await git(repo, 'rev-parse', 'HEAD'),
    tracking: await git(repo, 'config', '--get-regexp', '^branch\\.'),
    fetchHead: await readFile(path.join(repo, '.git', 'FETCH_HEAD'), 'utf8'),
    status: await git(repo, 'status', '--porcelain', '--untracked-files=all', '--ignored'),
    log: await git(repo, 'log', '--all', '--format=%H %P'),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-delta-'));
  upstream = path.join(dir, 'upstream.git');
  await runProcess('git', ['init', '--quiet', '--bare', '--initial-branch=main', upstream], {
    timeoutMs: 10_000,
  });
  server = await startLocalGitServer(upstream, 'widgets');
  url = server.gitUrl('local', 'widgets');
  header = `Authorization: Basic ${Buffer.from(`x-access-token:${await server.credential.token()}`).toString('base64')}`;
  const seed = await mkdtemp(path.join(dir, 'seed-'));
  await git(seed, 'init', '--quiet', '--initial-branch=main');
  await writeFile(path.join(seed, 'README.md'), '# widgets\n');
  await writeFile(path.join(seed, '.gitignore'), 'node_modules/\n');
  await git(seed, 'add', '-A');
  await git(seed, 'commit', '--quiet', '-m', 'first');
  await git(seed, 'tag', '-a', 'v0', '-m', 'v0');
  await git(seed, 'push', '--quiet', '--follow-tags', upstream, 'HEAD:refs/heads/main');
  await git(seed, 'push', '--quiet', upstream, 'HEAD:refs/heads/gone', 'HEAD:refs/heads/stays');
}, 60_000);

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a restored workspace brought up to date by the host', () => {
  it('ends exactly where `git fetch --prune origin` and the checkout end', async () => {
    const fast = await buildWorkspace('fast');
    const twin = await buildWorkspace('twin');
    const old = fast.commit;
    // Upstream moves on: main advances and is tagged, a branch appears, one goes, an old commit
    // is tagged (the workspace has it: a fetch follows that tag too), and a commit no branch
    // reaches is tagged (a fetch does not follow that one).
    const main = await commit('main', { 'README.md': '# widgets, changed\n', 'src/a.ts': 'export {};\n' });
    await commit('airlock/issue-1', { 'src/b.ts': 'export const b = 1;\n' }, 'main');
    const work = await mkdtemp(path.join(dir, 'tags-'));
    await git(work, 'clone', '--quiet', upstream, '.');
    await git(work, 'tag', '-a', 'v1', '-m', 'v1', main);
    await git(work, 'tag', 'v0-light', old);
    await git(work, 'checkout', '--quiet', '--orphan', 'loose');
    await git(work, 'commit', '--quiet', '--allow-empty', '-m', 'unreachable');
    await git(work, 'tag', 'unreachable');
    await git(work, 'push', '--quiet', 'origin', 'v1', 'v0-light', 'unreachable', ':refs/heads/gone');

    const mirrors = new GitMirrors({ root: path.join(dir, 'mirrors'), clock: systemClock, log });
    const task = taskFixture({
      repoFullName: 'local/widgets',
      branch: 'airlock/issue-7',
      start: { from: 'ref', ref: 'main' },
    });
    const host = await hostPath(mirrors, task, fast);
    await guestPath(twin.repo, task.branch, 'origin/main');

    if (!('applied' in host) || !host.applied || 'fallback' in host.applied)
      throw new Error(JSON.stringify(host));
    expect(host.applied.head).toBe(main);
    const [a, b] = [await seen(fast.repo), await seen(twin.repo)];
    expect(a).toEqual(b);
    expect(a.refs).toContain('refs/tags/v1');
    expect(a.refs).toContain('refs/tags/v0-light');
    expect(a.refs).not.toContain('refs/tags/unreachable');
    expect(a.refs).not.toContain('refs/remotes/origin/gone');
    expect(a.status).toContain('node_modules/dep/index.js');
    // Every object reachable is there, in the one pack the host wrote.
    await git(fast.repo, 'fsck', '--connectivity-only', '--no-dangling');
    expect(host.delta.pack?.objects).toBeGreaterThan(0);
    expect(host.delta.plan.counts).toEqual({ updated: 1, created: 1, pruned: 1, tags: 2 });
    // The record says what the host fetched.
    const fetched = host.events.find((e) => e.type === 'workspace.mirror_fetch');
    expect(fetched?.data).toMatchObject({ url, created: true });
    // The config listing is the runner's, as read by gitConfigEntries.
    expect(host.applied.cloned.entries).toContain('branch.airlock/issue-7.merge=refs/heads/main');

    // A second task: the mirror is fetched again (not made), and its own branch is its start.
    const again = await buildWorkspace('again');
    const twin2 = await buildWorkspace('twin2');
    const ownBranch = taskFixture({
      repoFullName: 'local/widgets',
      branch: 'airlock/issue-1',
      start: { from: 'own_branch' },
    });
    const second = await hostPath(mirrors, ownBranch, again);
    await guestPath(twin2.repo, ownBranch.branch, 'origin/airlock/issue-1');
    if (!('applied' in second) || !second.applied || 'fallback' in second.applied)
      throw new Error(JSON.stringify(second));
    expect(await seen(again.repo)).toEqual(await seen(twin2.repo));
    expect(second.events.find((e) => e.type === 'workspace.mirror_fetch')?.data).toMatchObject({
      created: false,
    });

    // A pack too large to travel inside the command is written first, with the same result.
    const third = await buildWorkspace('third');
    const twin3 = await buildWorkspace('twin3');
    await commit('main', { 'blob.bin': randomBytes(INLINE_FILES_MAX_BYTES * 2) });
    const large = await hostPath(mirrors, task, third);
    await guestPath(twin3.repo, task.branch, 'origin/main');
    if (!('applied' in large) || !large.applied || 'fallback' in large.applied)
      throw new Error(JSON.stringify(large));
    expect(large.delta.pack!.pack.length).toBeGreaterThan(INLINE_FILES_MAX_BYTES);
    expect(await seen(third.repo)).toEqual(await seen(twin3.repo));
    await git(third.repo, 'fsck', '--connectivity-only', '--no-dangling');
  }, 120_000);

  it('starts from the start branch even when a pushed tag is named like its remote-tracking ref', async () => {
    // Anyone who can push a tag can name it `origin/main`: a fetch follows it into the workspace,
    // where `origin/main` alone is ambiguous (git refuses the checkout, or a revision read with it
    // takes the tag). Both paths must check the remote-tracking branch out, by its full name.
    const fast = await buildWorkspace('shadowed');
    const twin = await buildWorkspace('shadowed-twin');
    const main = await commit('main', { 'shadow.txt': 'main moved\n' });
    const elsewhere = await commit('shadow-attack', { 'evil.txt': 'not main\n' }, 'main');
    const work = await mkdtemp(path.join(dir, 'shadow-'));
    await git(work, 'clone', '--quiet', upstream, '.');
    await git(work, 'tag', 'origin/main', elsewhere);
    await git(work, 'push', '--quiet', 'origin', 'refs/tags/origin/main');
    try {
      const task = taskFixture({
        repoFullName: 'local/widgets',
        branch: 'airlock/issue-11',
        start: { from: 'ref', ref: 'main' },
      });
      const mirrors = new GitMirrors({ root: path.join(dir, 'shadow-mirrors'), clock: systemClock, log });
      const host = await hostPath(mirrors, task, fast);
      if (!('applied' in host) || !host.applied || 'fallback' in host.applied)
        throw new Error(JSON.stringify(host.applied ?? host));
      expect(host.applied.head).toBe(main);
      expect(host.delta.plan.transaction).toContain(`create refs/tags/origin/main ${elsewhere}`);
      // The guest's own steps over a restored workspace, as the runner runs them.
      for (const step of workspaceSteps(task, url, twin.repo, true))
        await git(twin.repo, ...step.argv.slice(1));
      expect(await seen(fast.repo)).toEqual(await seen(twin.repo));
    } finally {
      await git(work, 'push', '--quiet', 'origin', ':refs/tags/origin/main', ':refs/heads/shadow-attack');
    }
  }, 60_000);

  it('keeps the mirror private, without the token, and speaks only HTTP(S) upstream', async () => {
    const root = path.join(dir, 'private-mirrors');
    const mirrors = new GitMirrors({ root, clock: systemClock, log });
    const token = await server.credential.token();
    await mirrors.use('local/widgets', (mirror) => mirror.fetch(url, token));
    expect((await stat(root)).mode & 0o777).toBe(0o700);
    for (const file of await filesUnder(root))
      expect(await readFile(file, 'latin1'), file).not.toContain(token);
    expect(await readdir(path.join(root, 'local', 'widgets.git'))).not.toContain('hooks');
    // A URL naming another transport is refused by git itself.
    for (const bad of [`file://${upstream}`, `ext::sh -c touch% ${path.join(dir, 'pwned')}`, upstream]) {
      await expect(mirrors.use('local/widgets', (mirror) => mirror.fetch(bad, token))).rejects.toThrow();
    }
    await expect(stat(path.join(dir, 'pwned'))).rejects.toThrow();
    expect(() => mirrors.dirOf('../etc')).toThrow(/not a repository name/);
    expect(() => mirrors.dirOf('a/..')).toThrow(/not a repository name/);
  }, 60_000);

  it("never puts the token on a host git process's command line", async () => {
    // A sampler watches every git process on the host while the mirror fetches: the token (raw or
    // as its Basic header) must be in no command line, only in the fetching process's environment,
    // which only this user can read. The test goes on until a fetching git process was seen with the
    // header in its environment, so it cannot pass by having looked at the wrong moment.
    const token = await server.credential.token();
    const basic = Buffer.from(`x-access-token:${token}`).toString('base64');
    const sampler = spawn(process.execPath, ['-e', PROC_SAMPLER], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    sampler.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    const seen = () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as SampledGit);
    const mirrors = new GitMirrors({ root: path.join(dir, 'argv-mirrors'), clock: systemClock, log });
    try {
      for (let i = 0; i < 30 && !seen().some((p) => p.environ.includes(basic)); i++) {
        await commit('main', { [`argv-${i}.txt`]: randomBytes(4096).toString('hex') });
        await mirrors.use('local/widgets', (mirror) => mirror.fetch(url, token));
      }
    } finally {
      sampler.kill();
      await once(sampler, 'close');
    }
    const sampled = seen();
    expect(sampled.some((p) => p.environ.includes(basic) && /fetch|remote-http/.test(p.cmdline))).toBe(true);
    for (const p of sampled) {
      expect(p.cmdline).not.toContain(token);
      expect(p.cmdline).not.toContain(basic);
    }
  }, 120_000);

  it('leaves no partial pack behind when a fetch into the mirror is cut short', async () => {
    // A fetch cut short (its timeout, the task cancelled) left git's half-received pack in the
    // mirror, and the next cut-short fetch another: disk taken with each, for as long as upstream
    // is too large to fetch in time.
    const bulky = path.join(dir, 'bulky.git');
    await runProcess('git', ['init', '--quiet', '--bare', '--initial-branch=main', bulky], {
      timeoutMs: 10_000,
    });
    const seed = await mkdtemp(path.join(dir, 'bulky-seed-'));
    await git(seed, 'init', '--quiet', '--initial-branch=main');
    // More objects than git unpacks loose: the fetch streams them into one pack.
    for (let i = 0; i < 256; i++) await writeFile(path.join(seed, `bulk-${i}.bin`), randomBytes(256 * 1024));
    await git(seed, 'add', '-A');
    await git(seed, 'commit', '--quiet', '-m', 'bulk');
    await git(seed, 'push', '--quiet', bulky, 'HEAD:refs/heads/main');
    await rm(seed, { recursive: true, force: true });
    const bulkyServer = await startLocalGitServer(bulky, 'bulky');
    try {
      const mirrors = new GitMirrors({ root: path.join(dir, 'cut-mirrors'), clock: systemClock, log });
      const packDir = path.join(mirrors.dirOf('local/bulky'), 'objects', 'pack');
      const cut = new AbortController();
      const fetching = mirrors.use('local/bulky', async (mirror) =>
        mirror.fetch(bulkyServer.gitUrl('local', 'bulky'), await bulkyServer.credential.token(), cut.signal),
      );
      const settled = fetching.then(
        () => 'fetched',
        () => 'cut',
      );
      // Cut as soon as the pack is arriving.
      while (!cut.signal.aborted) {
        const names = await readdir(packDir).catch(() => []);
        if (names.some((name) => name.startsWith('tmp_pack_'))) cut.abort();
        else if (
          (await Promise.race([settled, new Promise((r) => setImmediate(r, 'waiting'))])) !== 'waiting'
        )
          throw new Error('the fetch ended before it could be cut');
      }
      expect(await settled).toBe('cut');
      expect((await readdir(packDir)).filter((name) => name.startsWith('tmp_'))).toEqual([]);
    } finally {
      await bulkyServer.close();
      await rm(bulky, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses to pack a delta of more objects than its pack could hold, before packing anything', async () => {
    const mirrors = new GitMirrors({ root: path.join(dir, 'count-mirrors'), clock: systemClock, log });
    const token = await server.credential.token();
    await commit('main', { 'count-a.txt': 'a\n', 'count-b.txt': 'b\n', 'count-c.txt': 'c\n' });
    const result = await mirrors.use('local/widgets', async (mirror) => {
      const { refs } = await mirror.fetch(url, token);
      const main = refs.get('refs/heads/main')!.sha;
      // No packed object takes fewer than 8 bytes: 64 bytes hold at most 8, and main reaches more.
      const refused = await mirror.pack([main], [], { maxBytes: 64, maxObjectBytes: 1 << 30 });
      const leftovers = await readdir(path.join(mirror.dir, 'airlock-packing')).catch(() => []);
      // The same delta, given room: a pack of exactly the objects counted.
      const made = await mirror.pack([main], [], { maxBytes: 1 << 30, maxObjectBytes: 1 << 30 });
      return { refused, leftovers, made };
    });
    expect(result.refused).toMatchObject({ inflated: { objects: expect.any(Number), bytes: 0 } });
    const counted = 'inflated' in result.refused ? result.refused.inflated!.objects : 0;
    expect(counted).toBeGreaterThan(8);
    expect(result.leftovers).toEqual([]);
    expect(result.made).toMatchObject({ objects: counted });
  }, 60_000);

  it('deletes a mirror unused for 30 days, and packs the ones in use', async () => {
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const root = path.join(dir, 'idle-mirrors');
    const mirrors = new GitMirrors({ root, clock, log });
    const token = await server.credential.token();
    await mirrors.use('local/widgets', (mirror) => mirror.fetch(url, token));
    clock.advance(29 * 86_400_000);
    expect(await mirrors.collect()).toEqual([]);
    expect(await readdir(path.join(root, 'local'))).toEqual(['widgets.git']);
    clock.advance(2 * 86_400_000);
    expect(await mirrors.collect()).toEqual(['local/widgets']);
    expect(await readdir(path.join(root, 'local'))).toEqual([]);
  }, 60_000);

  it('leaves the guest to fetch when the host path cannot apply, saying why', async () => {
    const mirrors = new GitMirrors({ root: path.join(dir, 'fallback-mirrors'), clock: systemClock, log });
    const built = await buildWorkspace('fallback');
    const task = (start: Task['start']) =>
      taskFixture({ repoFullName: 'local/widgets', branch: 'airlock/issue-9', start });

    expect(await hostPath(mirrors, task({ from: 'ref', ref: 'no-such-branch' }), built)).toMatchObject({
      fallback: 'no-such-branch is not a branch of the repository upstream',
    });
    expect(await hostPath(mirrors, task({ from: 'pull_head', pull: 3 }), built)).toMatchObject({
      fallback: expect.stringMatching(/pull request's head/),
    });
    // Built at a commit upstream never had (its history rewritten and collected since).
    const local = await git(built.repo, 'commit-tree', '-m', 'rewritten', `${built.commit}^{tree}`);
    expect(
      await hostPath(mirrors, task({ from: 'ref', ref: 'main' }), { ...built, commit: local.trim() }),
    ).toMatchObject({ fallback: expect.stringMatching(/is not in the host's mirror/) });
    // A workspace whose refs are no longer as the clone left them: the transaction refuses, and
    // changes nothing.
    await commit('main', { 'more.txt': 'more\n' });
    await git(built.repo, 'update-ref', 'refs/remotes/origin/main', local.trim());
    const before = await git(built.repo, 'for-each-ref');
    const refused = await hostPath(mirrors, task({ from: 'ref', ref: 'main' }), built);
    expect(refused).toMatchObject({ applied: { fallback: expect.stringMatching(/did not apply/) } });
    expect(await git(built.repo, 'for-each-ref')).toBe(before);
    // A delta too large for the control channel.
    const big = await buildWorkspace('big');
    await commit('main', { 'blob.bin': randomBytes(MAX_HOST_DELTA_BYTES + 1024) });
    expect(await hostPath(mirrors, task({ from: 'ref', ref: 'main' }), big)).toMatchObject({
      fallback: expect.stringMatching(/^the delta is \d+ KiB, over the 256 KiB/),
    });
    // A delta whose objects are far over the limit before compression is refused for what it
    // holds, before any pack is made (this one would pack small: a pack's work and disk go with
    // its objects' inflated size, and a small push can make that large).
    const inflated = await buildWorkspace('inflated');
    await commit('main', { 'zeros.bin': Buffer.alloc(MAX_HOST_DELTA_OBJECT_BYTES + 1024) });
    expect(await hostPath(mirrors, task({ from: 'ref', ref: 'main' }), inflated)).toMatchObject({
      fallback: expect.stringMatching(
        /^the delta's objects are \d+ KiB before compression, over the \d+ KiB/,
      ),
    });
    // Upstream unreachable.
    await server.credential.revoke();
    const down = await hostPath(mirrors, task({ from: 'ref', ref: 'main' }), big);
    expect(down).toMatchObject({
      fallback: expect.stringMatching(/^the host could not bring its mirror up to date/),
    });
  }, 120_000);
});

async function filesUnder(root: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) files.push(path.join(entry.parentPath, entry.name));
  return files;
}
