import type { GuestExec, Vm } from '../sandbox/sandbox.ts';
import { type FailureReason, TaskFailure } from './task-runner.ts';

// After the agent has exited, the runner commits, diffs and pushes in the agent's workspace, whose
// git metadata the agent wrote. Git runs programs named there (hooks, `core.hooksPath`,
// `diff.external`, textconv and filter drivers, `core.fsmonitor`, an `include.path` that brings
// more of them, a `commondir` that points at another config), so left alone they would run the
// agent's code after its end and put its words in the commit and the recorded diff. The runner's
// git therefore reads no configuration but the one it writes, and runs with every such program
// switched off once more on the command line.
//
// It runs as the agent user, not as root. Every process of that user is gone by then (killed and
// recorded when the agent exited), so nothing of the agent's can act while it runs; and git
// follows links in the git directory (`refs` or `objects` pointing elsewhere) when it writes, so
// as root it would write wherever the agent pointed. As the agent user it can write only where
// the agent could itself.

/** Options on each of the runner's git commands in the workspace. */
const OPTIONS = [
  ['core.hooksPath', '/dev/null'],
  ['core.fsmonitor', 'false'],
  // The attributes file outside the repository (default: under $HOME/.config).
  ['core.attributesFile', '/dev/null'],
  // A dirty submodule is found by `git status` inside it, which would read that repository's own
  // config, filters and all (`git add` does not heed this: see commitWorkspace).
  ['diff.ignoreSubmodules', 'dirty'],
  // No gc or maintenance left running in the background after a commit.
  ['gc.auto', '0'],
  ['maintenance.auto', 'false'],
].flatMap(([key, value]) => ['-c', `${key}=${value}`]);

/** The configuration the runner writes over the agent's: git's defaults for a clone, no more. */
const RUNNER_CONFIG = `[core]
\trepositoryformatversion = 0
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
\thooksPath = /dev/null
\tfsmonitor = false
`;

/** Paths in the git directory that make git run a program or read configuration from elsewhere. */
const REMOVED = ['hooks', 'info/attributes', 'info/grafts', 'config.worktree', 'commondir'];

/** Largest listing of the agent's config kept for the record. */
const MAX_LISTING_CHARS = 64 * 1024;
/** Largest index listing read (the paths of every file in the repository). */
const MAX_INDEX_CHARS = 256 * 1024 * 1024;
/** Largest patch kept for the record. */
const MAX_PATCH_CHARS = 256 * 1024;

/** What the agent had put in its git metadata, taken away before the runner's git ran. */
export interface GitMetadataReset {
  /** Entries (`key=value`) of the workspace's config that were not there right after the clone. */
  config: string[];
  /** Why the config could not be listed, if it could not (it is replaced all the same). */
  configUnreadable?: string;
  /** Files removed from the git directory: hooks other than git's samples, attributes, links out. */
  removed: string[];
}

/** How the runner reaches the workspace's repository. */
export interface Workspace {
  vm: Pick<Vm, 'exec' | 'writeFile'>;
  repoDir: string;
  /** The agent user, who owns the workspace. */
  uid: number;
  signal?: AbortSignal;
}

/** A git command of the runner's, run in the workspace with nothing of the agent's configuration. */
export function runnerGit(workspace: Pick<Workspace, 'repoDir' | 'uid'>, args: string[]): GuestExec {
  return {
    argv: ['git', ...OPTIONS, ...args],
    cwd: workspace.repoDir,
    uid: workspace.uid,
    env: {
      // Named, not discovered: no `.git` file or parent directory decides which repository it is.
      GIT_DIR: `${workspace.repoDir}/.git`,
      GIT_WORK_TREE: workspace.repoDir,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_ATTR_NOSYSTEM: '1',
      // Replacement objects (refs/replace) would let a diff show other content than was pushed.
      GIT_NO_REPLACE_OBJECTS: '1',
      // Nothing under the agent's home: its ~/.config/git holds attributes and ignore files.
      HOME: '/nonexistent',
      GIT_TERMINAL_PROMPT: '0',
    },
  };
}

/** The command that lists the workspace config's entries (what {@link parseConfigListing} reads). */
export function configListing(workspace: Pick<Workspace, 'repoDir' | 'uid'>): GuestExec {
  const git = runnerGit(workspace, ['config', '--file', `${workspace.repoDir}/.git/config`, '--list', '-z']);
  // Outside any repository: a config that git cannot take as a repository's is still listed.
  const { GIT_DIR: _dir, GIT_WORK_TREE: _tree, ...env } = git.env ?? {};
  return { ...git, cwd: '/', env };
}

/** The entries of a config listing as `key=value` (`key` alone for a bare boolean), its first 64 KiB. */
export function parseConfigListing(listing: string, cut = false): { entries: string[]; truncated: boolean } {
  let out = listing;
  let truncated = cut;
  if (out.length > MAX_LISTING_CHARS) {
    out = out.slice(0, MAX_LISTING_CHARS);
    truncated = true;
  }
  const entries = out.split('\0');
  entries.pop(); // the text after the last entry's terminator, or a cut entry
  return { entries: entries.map((entry) => entry.replace('\n', '=')), truncated };
}

/** The workspace config's entries as `key=value` (`key` alone for a bare boolean). */
export async function gitConfigEntries(
  workspace: Workspace,
): Promise<{ entries: string[]; truncated: boolean } | { error: string }> {
  const listing = configListing(workspace);
  let out = '';
  let err = '';
  let truncated = false;
  const result = await workspace.vm.exec(
    listing,
    (stream, data) => {
      if (stream === 'stderr') err = (err + data).slice(-2048);
      else if (out.length < MAX_LISTING_CHARS) out += data;
      else truncated = true;
    },
    workspace.signal,
  );
  if (result.code !== 0)
    return { error: err.trim() || `git config exited with ${result.code ?? result.signal}` };
  return parseConfigListing(out, truncated);
}

/**
 * Takes away, once the agent has exited, everything in the workspace's git metadata that would run
 * a program or bring in configuration: refuses a git directory that is not the one cloned (a link,
 * a `gitdir:` file, not the agent user's), removes hooks, attributes, grafts and links to other
 * git directories, and writes the runner's own config. Says what the agent had set beyond
 * `cloned`, the config's entries right after the clone.
 */
export async function resetGitMetadata(workspace: Workspace, cloned: string[]): Promise<GitMetadataReset> {
  const { vm, repoDir, uid, signal } = workspace;
  const gitDir = `${repoDir}/.git`;
  const run = async (request: GuestExec) => {
    let out = '';
    const result = await vm.exec(
      { cwd: '/', uid, ...request },
      (_s, data) => {
        out = (out + data).slice(-MAX_LISTING_CHARS);
      },
      signal,
    );
    return { ok: result.code === 0, out };
  };

  const kinds = await run({ argv: ['stat', '-c', '%F %u', '--', repoDir, gitDir] });
  const expected = `directory ${uid}\ndirectory ${uid}\n`;
  if (!kinds.ok || kinds.out !== expected) {
    throw new TaskFailure(
      'agent_failed',
      `the agent left ${repoDir} and ${gitDir} as ${JSON.stringify(kinds.out.trim())}, not as directories of its own: airlock commits only from the repository it cloned`,
    );
  }

  const now = await gitConfigEntries(workspace);
  const before = new Set(cloned);
  const config = 'entries' in now ? now.entries.filter((entry) => !before.has(entry)) : [];
  if ('entries' in now && now.truncated) config.push('(listing cut at 64 KiB)');

  // Plain `sh` with a fixed script: the names found are printed NUL-separated, then everything
  // listed in REMOVED goes (rm does not follow links), the agent's config included.
  const removal = await run({
    argv: [
      '/bin/sh',
      '-c',
      `cd "$1" || exit 1
shift
for f in hooks/* hooks/.[!.]* "$@"; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  case $f in hooks/*.sample|hooks) ;; *) printf '%s\\0' "$f" ;; esac
done
[ -L hooks ] && printf 'hooks\\0'
rm -rf -- config "$@" || exit 1`,
      'reset-git-metadata',
      gitDir,
      ...REMOVED,
    ],
    env: { PATH: '/usr/bin:/bin' },
  });
  if (!removal.ok) {
    throw new TaskFailure(
      'agent_failed',
      `could not take the agent's hooks and config out of ${gitDir}: ${removal.out.trim().split('\n').slice(-4).join('\n')}`,
    );
  }
  const removed = removal.out.split('\0').filter(Boolean);
  await vm.writeFile(`${gitDir}/config`, RUNNER_CONFIG, { mode: 0o644, uid });
  return { config, removed, ...('error' in now ? { configUnreadable: now.error } : {}) };
}

/** The agent's work as the runner committed it. */
export interface WorkspaceCommit {
  head: string;
  /** `git diff --stat` from the base to the commit. */
  stat: string;
  /** The patch from the base to the commit, its first 256 KiB. */
  patch: string;
}

/**
 * Commits everything in the workspace (after {@link resetGitMetadata}) under the runner's identity
 * and says what changed since `base`; undefined when the agent changed nothing.
 */
export async function commitWorkspace(
  workspace: Workspace,
  commit: { base: string; name: string; email: string; message: string },
): Promise<WorkspaceCommit | undefined> {
  // `git add -A` asks each submodule in the index whether it is dirty by running `git status`
  // inside it, under that repository's own config (filters and all), whatever diff.ignoreSubmodules
  // says: they are left out of the runner's add, so a moved submodule is committed only if the agent
  // staged it itself.
  const index = await gitStep(workspace, ['ls-files', '--stage', '-z'], { maxChars: MAX_INDEX_CHARS });
  if (index.length >= MAX_INDEX_CHARS)
    throw new TaskFailure('internal', `the workspace's index lists more than ${MAX_INDEX_CHARS} characters`);
  const submodules = index
    .split('\0')
    .filter((entry) => entry.startsWith('160000 '))
    .map((entry) => `:(exclude,literal)${entry.slice(entry.indexOf('\t') + 1)}`);
  await gitStep(workspace, ['add', '-A', '--pathspec-from-file=-', '--pathspec-file-nul'], {
    stdin: ['.', ...submodules].join('\0'),
  });
  const changed = await workspace.vm.exec(
    runnerGit(workspace, ['diff', '--cached', '--quiet']),
    undefined,
    workspace.signal,
  );
  if (changed.code === 0) return undefined;
  const identity = ['-c', `user.name=${commit.name}`, '-c', `user.email=${commit.email}`];
  await gitStep(workspace, [...identity, 'commit', '--quiet', '-F', '-'], { stdin: commit.message });
  const head = (await gitStep(workspace, ['rev-parse', 'HEAD'])).trim();
  const diff = ['diff', '--no-ext-diff', '--no-textconv'];
  const stat = await gitStep(workspace, [...diff, '--stat', commit.base, head]);
  const patch = await gitStep(workspace, [...diff, commit.base, head], { maxChars: MAX_PATCH_CHARS });
  return { head, stat, patch };
}

/** Pushes the workspace's HEAD to `branch` of the repository at `url`; a refusal is `push_refused`. */
export async function pushWorkspace(workspace: Workspace, url: string, branch: string): Promise<void> {
  // To the URL by name: the runner's config has no remotes.
  await gitStep(workspace, ['push', '--quiet', url, `HEAD:refs/heads/${branch}`], {
    failure: 'push_refused',
  });
}

/** Runs one of the runner's git commands; its output, or a TaskFailure with its last lines. */
async function gitStep(
  workspace: Workspace,
  args: string[],
  options: { stdin?: string; maxChars?: number; failure?: FailureReason } = {},
): Promise<string> {
  const maxChars = options.maxChars ?? MAX_LISTING_CHARS;
  let out = '';
  let err = '';
  const request = runnerGit(workspace, args);
  const result = await workspace.vm.exec(
    options.stdin === undefined ? request : { ...request, stdin: options.stdin },
    (stream, data) => {
      if (stream === 'stderr') err = (err + data).slice(-8 * 1024);
      else if (out.length < maxChars) out = (out + data).slice(0, maxChars);
    },
    workspace.signal,
  );
  if (result.code !== 0) {
    const what = args.find((arg, i) => !arg.startsWith('-') && args[i - 1] !== '-c');
    const tail = `${out}${err}`.trim().split('\n').slice(-8).join('\n');
    throw new TaskFailure(
      options.failure ?? 'internal',
      `git ${what} failed (exit ${result.code ?? result.signal}): ${tail}`,
    );
  }
  return out;
}
