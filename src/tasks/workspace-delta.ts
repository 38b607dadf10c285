import type { WorkspaceRefs } from '../environments/workspace-refs.ts';
import type { MirrorRef } from '../git/git-mirrors.ts';
import type { Task } from './task.ts';

// A restored workspace is as its environment's clone left it. Today's way to bring it up to date
// is `git fetch --prune origin` in the guest, then a checkout. The same result, computed on the
// host: from the refs the clone had (recorded at the build) and the host's fresh mirror of the
// repository, the ref updates that fetch would make (remote-tracking branches moved, made and
// pruned; new tags that point into what the workspace will have), and the objects they need
// beyond what the workspace has, as one pack. The guest then only writes refs and checks out.

const ORIGIN = 'refs/remotes/origin/';
const HEADS = 'refs/heads/';
const TAGS = 'refs/tags/';

/** How a restored workspace is brought up to date without the guest fetching. */
export interface DeltaPlan {
  /** `git update-ref --stdin` commands, each checking the ref's value as the clone left it. */
  transaction: string[];
  /** Objects the pack starts from: the new values of the refs. */
  wants: string[];
  /** Objects the workspace has (its clone's refs, those the mirror has too): left out of the pack. */
  haves: string[];
  /** The task's branch, made at the start point. */
  branch: string;
  /** What is checked out: the start branch's remote-tracking ref (`refs/remotes/origin/main`). */
  checkoutFrom: string;
  /** The commit that is. */
  startSha: string;
  /** `.git/FETCH_HEAD` as `git fetch origin` would have written it. */
  fetchHead: string;
  counts: { updated: number; created: number; pruned: number; tags: number };
}

/** Why a restored workspace fetches in the guest instead, known before the mirror is fetched. */
export function deltaUnavailable(
  task: Pick<Task, 'start'>,
  workspace: WorkspaceRefs | null,
): string | undefined {
  if (task.start.from === 'pull_head')
    return "the task starts from a pull request's head, which the guest fetches itself";
  if (!workspace) return "the environment was built before its workspace's refs were recorded";
  return undefined;
}

/** Tags the mirror has that the workspace lacks: the ones a fetch may follow. */
export function newTags(workspace: WorkspaceRefs, mirror: ReadonlyMap<string, MirrorRef>): string[] {
  return [...mirror.keys()].filter((ref) => ref.startsWith(TAGS) && !(ref in workspace.refs));
}

/**
 * The commits tags are followed from: the mirror's branches, and the workspace's that the mirror
 * has (`present`): what the workspace will have once brought up to date.
 */
export function tagFollowingRoots(
  workspace: WorkspaceRefs,
  mirror: ReadonlyMap<string, MirrorRef>,
  present: ReadonlySet<string>,
): string[] {
  const roots = new Set<string>();
  for (const [ref, { sha }] of mirror) if (ref.startsWith(HEADS)) roots.add(sha);
  for (const [ref, sha] of Object.entries(workspace.refs))
    if ((ref.startsWith(HEADS) || ref.startsWith(ORIGIN)) && present.has(sha)) roots.add(sha);
  return [...roots];
}

/**
 * The plan that brings a restored workspace to what `git fetch --prune origin` and today's
 * checkout would give, or why it cannot: the start branch is not upstream, or the environment's
 * commit is not in the mirror (upstream rewrote the history it was built from).
 */
export function planWorkspaceDelta(input: {
  task: Pick<Task, 'start' | 'branch'>;
  workspace: WorkspaceRefs;
  /** The commit the environment was built at. */
  envCommit: string;
  mirror: ReadonlyMap<string, MirrorRef>;
  /** Which of the workspace's objects the mirror has. */
  present: ReadonlySet<string>;
  /** The new tags a fetch follows (from {@link newTags}, reachable from {@link tagFollowingRoots}). */
  followed: ReadonlySet<string>;
  /** The remote's URL as the workspace knows it (for FETCH_HEAD). */
  remote: string;
}): { plan: DeltaPlan } | { fallback: string } {
  const { task, workspace, mirror } = input;
  if (task.start.from === 'pull_head')
    return { fallback: 'a pull request head start is fetched in the guest' };
  const branch = task.start.from === 'ref' ? task.start.ref : task.branch;
  const start = mirror.get(`${HEADS}${branch}`);
  if (!start) return { fallback: `${branch} is not a branch of the repository upstream` };
  if (!input.present.has(input.envCommit))
    return {
      fallback: `the environment's commit ${input.envCommit.slice(0, 12)} is not in the host's mirror (history rewritten upstream?)`,
    };

  const transaction: string[] = [];
  const wants = new Set<string>();
  const counts = { updated: 0, created: 0, pruned: 0, tags: 0 };
  const heads = [...mirror].filter(([ref]) => ref.startsWith(HEADS)).sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [ref, { sha }] of heads) {
    const tracking = `${ORIGIN}${ref.slice(HEADS.length)}`;
    const old = workspace.refs[tracking];
    if (old === sha) continue;
    wants.add(sha);
    if (old) {
      transaction.push(`update ${tracking} ${sha} ${old}`);
      counts.updated++;
    } else {
      transaction.push(`create ${tracking} ${sha}`);
      counts.created++;
    }
  }
  for (const [ref, old] of Object.entries(workspace.refs).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!ref.startsWith(ORIGIN) || mirror.has(`${HEADS}${ref.slice(ORIGIN.length)}`)) continue;
    transaction.push(`delete ${ref} ${old}`);
    counts.pruned++;
  }
  const tags = [...input.followed].filter((ref) => mirror.has(ref) && !(ref in workspace.refs)).sort();
  for (const ref of tags) {
    const { sha } = mirror.get(ref)!;
    wants.add(sha);
    transaction.push(`create ${ref} ${sha}`);
    counts.tags++;
  }
  const haves = [...new Set(Object.values(workspace.refs))].filter((sha) => input.present.has(sha));
  return {
    plan: {
      transaction,
      wants: [...wants],
      haves,
      branch: task.branch,
      // By its full name: a tag named `origin/<branch>` (anyone who can push a tag can make one,
      // and a fetch follows it) would make the short name ambiguous.
      checkoutFrom: `${ORIGIN}${branch}`,
      startSha: start.sha,
      fetchHead: fetchHead(workspace, heads, tags, mirror, input.remote),
      counts,
    },
  };
}

/**
 * FETCH_HEAD as `git fetch origin` writes it in a clone on its default branch: that branch's
 * upstream for merging, then every other branch and each tag it followed, not for merging.
 */
function fetchHead(
  workspace: WorkspaceRefs,
  heads: Array<[string, MirrorRef]>,
  tags: string[],
  mirror: ReadonlyMap<string, MirrorRef>,
  remote: string,
): string {
  // As git names the remote there: without a trailing slash or `.git`.
  const url = remote.replace(/\/+$/, '').replace(/\.git$/, '');
  const line = (sha: string, merge: boolean, what: string) =>
    `${sha}\t${merge ? '' : 'not-for-merge'}\t${what} of ${url}\n`;
  const branchLine = ([ref, { sha }]: [string, MirrorRef]) =>
    line(sha, ref === workspace.head, `branch '${ref.slice(HEADS.length)}'`);
  const merged = heads.filter(([ref]) => ref === workspace.head);
  const others = heads.filter(([ref]) => ref !== workspace.head);
  return [
    ...merged.map(branchLine),
    ...others.map(branchLine),
    ...tags.map((ref) => line(mirror.get(ref)!.sha, false, `tag '${ref.slice(TAGS.length)}'`)),
  ].join('');
}
