import type { AuditSink } from '../audit-sink.ts';
import type { EnvironmentRecord } from '../environments/environment-store.ts';
import { errorMessage } from '../errors.ts';
import type { DeltaPack, GitMirrors, MirrorFetch } from '../git/git-mirrors.ts';
import type { GuestExec } from '../sandbox/sandbox.ts';
import type { Task } from './task.ts';
import {
  type DeltaPlan,
  deltaUnavailable,
  newTags,
  planWorkspaceDelta,
  tagFollowingRoots,
} from './workspace-delta.ts';
import { configListing, parseConfigListing, type Workspace } from './workspace-git.ts';

/**
 * The largest pack handed to a guest through its control channel (slow under TCG); a larger
 * delta is fetched by the guest itself, over its proxy.
 */
export const MAX_HOST_DELTA_BYTES = 256 * 1024;

/**
 * The most a delta's objects may hold before compression for the host to pack them. Packing costs
 * in proportion to it (git inflates, delta-searches, compresses and writes each object), and a few
 * bytes pushed can make it large: a new version of each large file, a small delta in the mirror
 * but whole in the self-contained pack. A pack 64 times smaller than its objects is rare.
 */
export const MAX_HOST_DELTA_OBJECT_BYTES = 64 * MAX_HOST_DELTA_BYTES;

/**
 * How long a restored VM waits for the host's delta before its guest fetches instead: about what
 * that fetch costs under TCG. It waits longer only when the host is making a repository's mirror
 * (a whole clone) or upstream is slow; the host's fetch then goes on, for the tasks after.
 */
export const DELTA_WAIT_MS = 3_000;

/** The host's delta, or the reason the guest fetches instead if it is not ready within `ms`. */
export async function deltaWithin(
  delta: Promise<HostDelta | { fallback: string }>,
  ms: number,
): Promise<HostDelta | { fallback: string }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<{ fallback: string }>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          fallback: `the host's delta was not ready ${ms / 1000} s after the VM (a mirror being made, or a slow upstream)`,
        }),
      ms,
    );
  });
  try {
    return await Promise.race([delta, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A restored workspace's delta, ready on the host. */
export interface HostDelta {
  plan: DeltaPlan;
  /** Absent when the workspace has every object it needs. */
  pack?: DeltaPack;
  fetched: MirrorFetch;
}

/** What the runner reads from the workspace once it is at its start point. */
export interface PreparedWorkspace {
  head: string;
  cloned: { entries: string[]; truncated: boolean };
}

/**
 * Fetches the task's repository into the host's mirror with the task's credential and computes
 * what the restored workspace lacks: the ref updates `git fetch --prune origin` would make and one
 * pack of the objects they need. Never rejects: whatever stands in the way is the reason the guest
 * fetches instead. The fetch is recorded (`workspace.mirror_fetch`).
 */
export async function prepareHostDelta(
  deps: { mirrors: GitMirrors; audit: AuditSink },
  input: {
    task: Task;
    env: EnvironmentRecord;
    /** The repository upstream (what the task's proxy forwards to). */
    url: string;
    token: () => Promise<string>;
    /** The remote as the workspace names it (the proxy's URL). */
    remote: string;
    signal: AbortSignal;
  },
): Promise<HostDelta | { fallback: string }> {
  const { task, env } = input;
  const unavailable = deltaUnavailable(task, env.workspaceRefs);
  if (unavailable || !env.workspaceRefs) return { fallback: unavailable ?? 'no workspace refs' };
  const workspace = env.workspaceRefs;
  try {
    return await deps.mirrors.use(task.repoFullName, async (mirror) => {
      // What the workspace has is looked up in the mirror while it fetches; what was not there
      // then (all of it, when the mirror is being made) is looked up again after the fetch.
      const haves = [...new Set(Object.values(workspace.refs))];
      const [fetched, before] = await Promise.all([
        mirror.fetch(input.url, await input.token(), input.signal),
        mirror.present(haves).catch(() => new Set<string>()),
      ]);
      const missing = haves.filter((sha) => !before.has(sha));
      const present = missing.length ? new Set([...before, ...(await mirror.present(missing))]) : before;
      deps.audit.append(task.id, 'workspace.mirror_fetch', {
        url: input.url,
        created: fetched.created,
        durationMs: Math.round(fetched.durationMs),
        refs: fetched.refs.size,
        changed: fetched.changed.slice(0, 100),
        ...(fetched.changed.length > 100 ? { changedNotListed: fetched.changed.length - 100 } : {}),
      });
      const candidates = newTags(workspace, fetched.refs);
      const followed = await mirror.tagsReachable(
        candidates,
        tagFollowingRoots(workspace, fetched.refs, present),
      );
      const planned = planWorkspaceDelta({
        task,
        workspace,
        envCommit: env.commitSha,
        mirror: fetched.refs,
        present,
        followed,
        remote: input.remote,
      });
      if ('fallback' in planned) return planned;
      const { plan } = planned;
      if (!plan.wants.length) return { plan, fetched };
      const pack = await mirror.pack(plan.wants, plan.haves, {
        maxBytes: MAX_HOST_DELTA_BYTES,
        maxObjectBytes: MAX_HOST_DELTA_OBJECT_BYTES,
      });
      if ('tooLarge' in pack) {
        const kib = (bytes: number) => Math.ceil(bytes / 1024);
        if (!pack.inflated)
          return {
            fallback: `the delta is ${kib(pack.tooLarge)} KiB, over the ${kib(MAX_HOST_DELTA_BYTES)} KiB handed over by the host`,
          };
        const { objects, bytes } = pack.inflated;
        return {
          fallback:
            bytes > MAX_HOST_DELTA_OBJECT_BYTES
              ? `the delta's objects are ${kib(bytes)} KiB before compression, over the ${kib(MAX_HOST_DELTA_OBJECT_BYTES)} KiB the host packs`
              : `the delta has ${objects} objects, too many for the ${kib(MAX_HOST_DELTA_BYTES)} KiB handed over by the host`,
        };
      }
      return { plan, pack, fetched };
    });
  } catch (error) {
    return { fallback: `the host could not bring its mirror up to date: ${errorMessage(error)}` };
  }
}

// One process tree in the guest instead of four execs and as many file writes: write the files
// given inline (a pack, its index, FETCH_HEAD: small ones travel as arguments, octal-escaped for
// the shell's own printf, sparing the guest a round trip per file), write the refs a fetch would
// have written (a transaction that checks each ref is as the clone left it), check the start
// branch out as today's step does (its hooks run as they would), print HEAD (read from the files
// when it can be, which costs no process) and list the config as the runner's own git would.
const APPLY_SCRIPT = `set -e
branch=$1 from=$2
shift 2
while [ "$1" != -- ]; do
  case $1 in
  '>'*) exec 3> "\${1#>}" ;;
  *) printf "$1" >&3 ;;
  esac
  shift
done
shift
exec 3>&-
git -c gc.auto=0 -c maintenance.auto=false update-ref -m "fetch: from the host's mirror" --stdin
git -c gc.auto=0 -c maintenance.auto=false checkout --quiet --force -B "$branch" "$from" >&2
head=
read -r head < .git/HEAD || [ -n "$head" ]
case $head in
'ref: '*)
  ref=\${head#ref: }
  if [ -f ".git/$ref" ]; then
    read -r head < ".git/$ref" || [ -n "$head" ]
  else
    head=$(git rev-parse HEAD)
  fi ;;
esac
printf '%s\\n' "$head"
while [ "$1" != -- ]; do export "$1"; shift; done
shift
cd /
exec "$@"`;

/** Files at most this large in all are written by the command itself; larger ones first, apart. */
export const INLINE_FILES_MAX_BYTES = 32 * 1024;
/** One argument's share of an inline file (the kernel takes at most 128 KiB per argument). */
const INLINE_CHUNK_CHARS = 96 * 1024;

/** A file the command writes before it runs git. */
export interface InlineFile {
  path: string;
  content: Buffer;
}

/**
 * The one guest command that applies a plan: `files` (the pack, its index and FETCH_HEAD, unless
 * they were written already) as arguments, the ref transaction on stdin.
 */
export function applyDeltaExec(
  plan: DeltaPlan,
  workspace: Pick<Workspace, 'repoDir' | 'uid'>,
  files: readonly InlineFile[] = [],
): GuestExec {
  const listing = configListing(workspace);
  const exports = Object.entries(listing.env ?? {}).map(([key, value]) => `${key}=${value}`);
  const written = files.flatMap((file) => [`>${file.path}`, ...printfChunks(file.content)]);
  return {
    argv: [
      'sh',
      '-c',
      APPLY_SCRIPT,
      'airlock-workspace-delta',
      plan.branch,
      plan.checkoutFrom,
      ...written,
      '--',
      ...exports,
      '--',
      ...listing.argv,
    ],
    cwd: workspace.repoDir,
    uid: workspace.uid,
    stdin: plan.transaction.map((line) => `${line}\n`).join(''),
  };
}

/**
 * `content` as printf formats that print it byte for byte: letters and digits as themselves,
 * every other byte as a three-digit octal escape (so no format is a directive, and no argument
 * begins with the `>` that names a file).
 */
export function printfChunks(content: Buffer): string[] {
  const chunks: string[] = [];
  let chunk = '';
  for (const byte of content) {
    const alnum =
      (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
    chunk += alnum ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, '0')}`;
    if (chunk.length >= INLINE_CHUNK_CHARS) {
      chunks.push(chunk);
      chunk = '';
    }
  }
  if (chunk || !chunks.length) chunks.push(chunk);
  return chunks;
}

/**
 * Applies a delta the host prepared: its pack, index and FETCH_HEAD into the workspace as the
 * agent user (inline in the one command when small, else written first), then the command
 * ({@link applyDeltaExec}). Its HEAD and config listing, or why it did not apply (the workspace is
 * then as the clone left it, or with refs a guest fetch will move again).
 */
export async function applyHostDelta(
  workspace: Workspace,
  delta: HostDelta,
  env: Record<string, string>,
): Promise<PreparedWorkspace | { fallback: string }> {
  const { vm, repoDir, uid, signal } = workspace;
  const { plan, pack } = delta;
  const git = `${repoDir}/.git`;
  // The index last: it is what makes git see the pack.
  const files: InlineFile[] = [
    { path: `${git}/FETCH_HEAD`, content: Buffer.from(plan.fetchHead) },
    ...(pack
      ? [
          { path: `${git}/objects/pack/${pack.name}.pack`, content: pack.pack },
          { path: `${git}/objects/pack/${pack.name}.idx`, content: pack.idx },
        ]
      : []),
  ];
  const inline = files.reduce((sum, file) => sum + file.content.length, 0) <= INLINE_FILES_MAX_BYTES;
  if (!inline) {
    try {
      for (const file of files) await vm.writeFile(file.path, file.content, { mode: 0o644, uid });
    } catch (error) {
      return { fallback: `the delta could not be written into the workspace: ${errorMessage(error)}` };
    }
  }
  const request = applyDeltaExec(plan, workspace, inline ? files : []);
  let out = '';
  let err = '';
  let cut = false;
  const result = await vm.exec(
    { ...request, env: { ...env, ...request.env } },
    (stream, data) => {
      if (stream === 'stderr') err = (err + data).slice(-4096);
      else if (out.length < MAX_OUTPUT_CHARS) out += data;
      else cut = true;
    },
    signal,
  );
  if (result.code !== 0) {
    const tail = err.trim().split('\n').slice(-8).join('\n');
    return { fallback: `the delta did not apply (exit ${result.code ?? result.signal}): ${tail}` };
  }
  const newline = out.indexOf('\n');
  const head = out.slice(0, newline);
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(head))
    return { fallback: `the workspace's HEAD read ${JSON.stringify(head.slice(0, 80))} after the delta` };
  return { head, cloned: parseConfigListing(out.slice(newline + 1), cut) };
}

/** HEAD's line and the config listing's 64 KiB, with room to spare. */
const MAX_OUTPUT_CHARS = 128 * 1024;
