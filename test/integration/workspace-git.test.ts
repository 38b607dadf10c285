import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { GuestExec, GuestExecResult } from '../../src/sandbox/sandbox.ts';
import { TaskFailure } from '../../src/tasks/task-runner.ts';
import {
  commitWorkspace,
  gitConfigEntries,
  pushWorkspace,
  resetGitMetadata,
  type Workspace,
} from '../../src/tasks/workspace-git.ts';

// The runner's git steps after the agent, run by the real git on this host (the guest image's
// version, 2.39) against a workspace where an agent planted every program git could be made to
// run. The VM end of the same claim is test/e2e/git-metadata.test.ts; here each way in is tried
// in a second, including those the VM test leaves out.

let dir: string;
let origin: string;
let repo: string;
let markers: string;
let workspace: Workspace;
let uid: number;

/** Runs a guest command on this host instead: same argv, cwd, environment and stdin. */
function hostExec(request: GuestExec, onOutput?: (s: 'stdout' | 'stderr', d: string) => void) {
  if (request.uid !== undefined && request.uid !== uid) throw new Error(`cannot run as uid ${request.uid}`);
  return new Promise<GuestExecResult>((resolve, reject) => {
    const child = spawn(request.argv[0]!, request.argv.slice(1), {
      cwd: request.cwd ?? '/',
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', ...request.env },
    });
    child.stdout.setEncoding('utf8').on('data', (d: string) => onOutput?.('stdout', d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => onOutput?.('stderr', d));
    child.stdin.on('error', () => {}); // a command that reads no input closes it early
    child.stdin.end(request.stdin ?? '');
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, durationMs: 0 }));
  });
}

/** git as the agent runs it in its workspace: its own config and all. */
function agentGit(...args: string[]): string {
  return execFileSync('git', args, { cwd: repo, encoding: 'utf8', env: cleanEnv(), stdio: 'pipe' });
}

function cleanEnv() {
  return {
    PATH: process.env.PATH,
    HOME: path.join(dir, 'home'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'agent',
    GIT_AUTHOR_EMAIL: 'agent@example.invalid',
    GIT_COMMITTER_NAME: 'agent',
    GIT_COMMITTER_EMAIL: 'agent@example.invalid',
  };
}

/** A program that records that it ran, then does what `then` says. */
async function plant(file: string, name: string, then = ''): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `#!/bin/sh\ntouch ${markers}/${name}\n${then}\n`, { mode: 0o755 });
  return file;
}

beforeEach(async () => {
  uid = process.getuid!();
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-workspace-git-'));
  origin = path.join(dir, 'origin.git');
  repo = path.join(dir, 'repo');
  markers = path.join(dir, 'markers');
  await mkdir(markers);
  await mkdir(path.join(dir, 'home'));
  const git = (cwd: string, ...args: string[]) =>
    execFileSync('git', args, { cwd, encoding: 'utf8', env: cleanEnv() });
  git(dir, 'init', '--quiet', '--bare', origin);
  const seed = path.join(dir, 'seed');
  git(dir, 'init', '--quiet', seed);
  await writeFile(path.join(seed, 'greeting.txt'), 'Hello\n');
  git(seed, 'add', '.');
  git(seed, '-c', 'user.name=s', '-c', 'user.email=s@example.invalid', 'commit', '--quiet', '-m', 'seed');
  git(seed, 'push', '--quiet', origin, 'HEAD:refs/heads/main');
  git(dir, 'clone', '--quiet', '--branch', 'main', origin, repo);
  workspace = {
    vm: { exec: hostExec, writeFile: (p, c, o) => writeFile(p, c, { mode: o?.mode }) },
    repoDir: repo,
    uid,
  };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The runner's steps from the agent's exit to the push, as vm-task-runner takes them. */
async function runnerSteps(cloned: string[], base: string) {
  const reset = await resetGitMetadata(workspace, cloned);
  const commit = await commitWorkspace(workspace, {
    base,
    name: 'bot',
    email: 'bot@example.invalid',
    message: 'the runner commits',
  });
  if (!commit) throw new Error('expected a commit');
  await pushWorkspace(workspace, origin, 'airlock/task');
  const pushed = (...args: string[]) =>
    execFileSync('git', ['--git-dir', origin, ...args], { encoding: 'utf8', env: cleanEnv() });
  return { reset, commit, pushed };
}

it('runs none of the programs an agent can name in its git metadata, and commits and records its change as it is', async () => {
  const cloned = await gitConfigEntries(workspace);
  if (!('entries' in cloned)) throw new Error(cloned.error);
  const base = agentGit('rev-parse', 'HEAD').trim();

  // The agent's change.
  await writeFile(path.join(repo, 'greeting.txt'), 'Hello, world\n');
  await writeFile(path.join(repo, '.gitattributes'), '* filter=swap diff=conv\n');
  // Hooks, where git looks for them and where core.hooksPath sends it.
  const git = path.join(repo, '.git');
  for (const hook of ['pre-commit', 'commit-msg', 'post-commit', 'pre-push', 'reference-transaction'])
    await plant(path.join(git, 'hooks', hook), hook);
  for (const hook of ['pre-commit', 'pre-push'])
    await plant(path.join(dir, 'hooks', hook), `hooksPath-${hook}`);
  agentGit('config', 'core.hooksPath', path.join(dir, 'hooks'));
  // Programs named in the config: diff, textconv, filters, fsmonitor, credentials, a pager.
  agentGit('config', 'diff.external', await plant(path.join(git, 'ext'), 'diff-external', 'echo forged'));
  agentGit('config', 'diff.conv.textconv', await plant(path.join(git, 'conv'), 'textconv', 'echo forged'));
  agentGit('config', 'filter.swap.clean', await plant(path.join(git, 'clean'), 'clean', 'echo swapped'));
  agentGit(
    'config',
    'filter.info.clean',
    await plant(path.join(git, 'info-clean'), 'info-clean', 'echo swapped'),
  );
  await writeFile(path.join(git, 'info', 'attributes'), '*.txt filter=info\n');
  agentGit('config', 'core.fsmonitor', await plant(path.join(git, 'fsmonitor'), 'fsmonitor', 'exit 1'));
  agentGit('config', 'credential.helper', `!${await plant(path.join(git, 'cred'), 'credential-helper')}`);
  agentGit('config', 'core.pager', await plant(path.join(git, 'pager'), 'pager'));
  // Configuration brought in from elsewhere.
  const included = path.join(dir, 'included');
  await writeFile(
    included,
    `[core]\n\tfsmonitor = ${await plant(path.join(dir, 'inc-fsmon'), 'include-fsmonitor', 'exit 1')}\n`,
  );
  agentGit('config', 'include.path', included);
  agentGit('config', `includeIf.gitdir:${git}/.path`, included);
  // A repository of its own inside the workspace, whose dirty state git would ask it for.
  const nested = path.join(repo, 'nested');
  await mkdir(nested);
  execFileSync('git', ['init', '--quiet'], { cwd: nested, env: cleanEnv() });
  await writeFile(path.join(nested, 'file'), 'x\n');
  await writeFile(path.join(nested, '.gitattributes'), '* filter=nested\n');
  execFileSync('git', ['add', '.'], { cwd: nested, env: cleanEnv() });
  execFileSync('git', ['-c', 'user.name=a', '-c', 'user.email=a@example.invalid', 'commit', '-qm', 'n'], {
    cwd: nested,
    env: cleanEnv(),
  });
  const nestedClean = await plant(path.join(dir, 'nested-clean'), 'nested-clean', 'cat');
  execFileSync('git', ['config', 'filter.nested.clean', nestedClean], { cwd: nested, env: cleanEnv() });
  agentGit('add', 'nested');
  // Same size, later mtime: git status can only tell by filtering and hashing the content.
  await writeFile(path.join(nested, 'file'), 'y\n');
  await utimes(path.join(nested, 'file'), new Date(Date.now() + 60_000), new Date(Date.now() + 60_000));
  // The base commit replaced by another, so a diff from it would show other content.
  const other = agentGit('commit-tree', '-m', 'other', agentGit('mktree').trim()).trim();
  agentGit('replace', base, other);
  // A link to another git directory, whose config would be read: the last thing the agent does.
  await mkdir(path.join(dir, 'common', 'hooks'), { recursive: true });
  await writeFile(path.join(git, 'commondir'), path.join(dir, 'common'));

  // What the agent's own git ran on the way (the include's fsmonitor, say) does not count.
  await rm(markers, { recursive: true });
  await mkdir(markers);
  const { reset, commit, pushed } = await runnerSteps(cloned.entries, base);

  expect(await readdir(markers)).toEqual([]);
  const head = 'refs/heads/airlock/task';
  expect(pushed('rev-parse', head).trim()).toBe(commit.head);
  expect(pushed('rev-parse', `${head}~1`).trim()).toBe(base);
  expect(pushed('diff-tree', '--no-commit-id', '--name-only', '-r', base, head).split('\n')).toEqual([
    '.gitattributes',
    'greeting.txt',
    'nested',
    '',
  ]);
  expect(pushed('show', `${head}:greeting.txt`)).toBe('Hello, world\n');
  expect(pushed('diff', base, head)).toBe(commit.patch);
  expect(pushed('diff', '--stat', base, head)).toBe(commit.stat);
  expect(commit.patch).not.toContain('forged');

  expect(reset.removed.sort()).toEqual([
    'commondir',
    'hooks/commit-msg',
    'hooks/post-commit',
    'hooks/pre-commit',
    'hooks/pre-push',
    'hooks/reference-transaction',
    'info/attributes',
  ]);
  expect(reset.config).toEqual(
    expect.arrayContaining([
      `core.hookspath=${path.join(dir, 'hooks')}`,
      `diff.external=${git}/ext`,
      `filter.swap.clean=${git}/clean`,
      `core.fsmonitor=${git}/fsmonitor`,
      `include.path=${included}`,
      `credential.helper=!${git}/cred`,
    ]),
  );
  expect(reset.config.some((entry) => entry.startsWith('remote.origin.'))).toBe(false);
});

it('reports nothing when the agent left its git metadata as cloned', async () => {
  const cloned = await gitConfigEntries(workspace);
  if (!('entries' in cloned)) throw new Error(cloned.error);
  await writeFile(path.join(repo, 'greeting.txt'), 'Hello, world\n');
  const { reset, commit, pushed } = await runnerSteps(cloned.entries, agentGit('rev-parse', 'HEAD').trim());
  expect(reset).toEqual({ config: [], removed: [] });
  expect(pushed('show', `${commit.head}:greeting.txt`)).toBe('Hello, world\n');
});

it('refuses a git directory that is not the one cloned: a gitdir file, a link', async () => {
  const cloned = await gitConfigEntries(workspace);
  if (!('entries' in cloned)) throw new Error(cloned.error);
  const elsewhere = path.join(dir, 'elsewhere.git');
  await rm(path.join(repo, '.git'), { recursive: true });
  execFileSync('git', ['init', '--quiet', '--bare', elsewhere], { env: cleanEnv() });
  await writeFile(path.join(repo, '.git'), `gitdir: ${elsewhere}\n`);
  const refused = resetGitMetadata(workspace, cloned.entries);
  await expect(refused).rejects.toBeInstanceOf(TaskFailure);
  await expect(refused).rejects.toThrow(/"directory \d+\\nregular file \d+", not as directories of its own/);

  await rm(path.join(repo, '.git'));
  await symlink(elsewhere, path.join(repo, '.git'));
  await expect(resetGitMetadata(workspace, cloned.entries)).rejects.toThrow(/symbolic link/);
});
