import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../clock.ts';
import { errorMessage, ProcessError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { hostGit } from './host-git.ts';

/** A mirror unused this long is deleted (as long as an environment unused is kept). */
export const MIRROR_IDLE_MS = 30 * 86_400_000;
/** How often, at most, a use of the mirrors looks for idle ones and packs the others. */
const COLLECT_INTERVAL_MS = 3600_000;
/** The file whose modification time says when a mirror was last used. */
const USED_STAMP = 'airlock-used';
/** How long a fetch into a mirror may take (its first one fetches the whole repository). */
const FETCH_TIMEOUT_MS = 5 * 60_000;

// Every git command on a mirror: a hostile repository's content runs nothing here. The mirrors are
// bare (nothing is checked out), hooks point nowhere, only HTTP(S) is spoken (no `ext::`, `file::`
// or ssh transports a URL or a submodule could name), redirects are not followed (the token's
// header would go with them), and no gc or maintenance starts in the background.
const SAFE = [
  ['core.hooksPath', '/dev/null'],
  ['core.fsmonitor', 'false'],
  ['protocol.allow', 'never'],
  ['protocol.https.allow', 'always'],
  ['protocol.http.allow', 'always'],
  ['http.followRedirects', 'false'],
  ['fetch.recurseSubmodules', 'false'],
  ['gc.auto', '0'],
  ['gc.autoDetach', 'false'],
  ['maintenance.auto', 'false'],
].flatMap(([key, value]) => ['-c', `${key}=${value}`]);

/** A ref of a mirror: the object it names and, for an annotated tag, the object the tag names. */
export interface MirrorRef {
  sha: string;
  peeled?: string;
}

/** What one fetch into a mirror did. */
export interface MirrorFetch {
  /** The mirror's branches and tags after the fetch, by full name. */
  refs: ReadonlyMap<string, MirrorRef>;
  /** The refs the fetch moved, made or deleted (null: absent on that side). */
  changed: Array<{ ref: string; from: string | null; to: string | null }>;
  /** Whether the mirror was made by this fetch (it then fetched the whole repository). */
  created: boolean;
  durationMs: number;
}

/** A self-contained pack (no deltas against objects outside it) and its index. */
export interface DeltaPack {
  /** `pack-<checksum>`, the name git gives both files. */
  name: string;
  pack: Buffer;
  idx: Buffer;
  objects: number;
}

/**
 * Bare mirrors of task repositories on the host, under `<root>/<owner>/<name>.git` (0700): fetched
 * with a task's own credential right before the task needs them, so the host can hand a restored
 * workspace the objects it lacks without the guest going to the network. One use of a mirror at a
 * time (a fetch's ref updates and the packs made from them do not interleave with another's). A
 * mirror unused for {@link MIRROR_IDLE_MS} is deleted; the others are packed by `git gc --auto`.
 */
export class GitMirrors {
  readonly #root: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #idleMs: number;
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Each mirror's refs after its last fetch in this process (a fetch then lists them only once). */
  readonly #known = new Map<string, Map<string, MirrorRef>>();
  #lastCollect = 0;

  constructor(deps: { root: string; clock: Clock; log: Logger; idleMs?: number }) {
    this.#root = deps.root;
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#idleMs = deps.idleMs ?? MIRROR_IDLE_MS;
  }

  /** Where a repository's mirror is kept. */
  dirOf(repoFullName: string): string {
    const [owner = '', name = '', ...rest] = repoFullName.split('/');
    const part = (s: string) => /^[A-Za-z0-9._-]+$/.test(s) && !/^\.+$/.test(s);
    if (rest.length || !part(owner) || !part(name))
      throw new ProcessError(
        `${JSON.stringify(repoFullName)} is not a repository name a mirror can be kept for`,
      );
    return path.join(this.#root, owner, `${name}.git`);
  }

  /** Runs `fn` on a repository's mirror, alone; marks the mirror used. */
  async use<T>(repoFullName: string, fn: (mirror: Mirror) => Promise<T>): Promise<T> {
    const dir = this.dirOf(repoFullName);
    const result = this.#exclusive(dir, async () => {
      const mirror = new Mirror(dir, this.#known);
      const value = await fn(mirror);
      await mirror.markUsed(this.#clock.now());
      return value;
    });
    this.#collectIfDue();
    return result;
  }

  /**
   * Deletes mirrors unused for the idle time (and packing leftovers); runs `git gc --auto` in the
   * others. Returns the mirrors deleted.
   */
  async collect(): Promise<string[]> {
    this.#lastCollect = this.#clock.now().getTime();
    const removed: string[] = [];
    const owners = await readdir(this.#root, { withFileTypes: true }).catch(() => []);
    for (const owner of owners.filter((e) => e.isDirectory())) {
      const ownerDir = path.join(this.#root, owner.name);
      for (const entry of await readdir(ownerDir)) {
        const dir = path.join(ownerDir, entry);
        await this.#exclusive(dir, async () => {
          const used = await stat(path.join(dir, USED_STAMP)).catch(() => stat(dir));
          if (this.#clock.now().getTime() - used.mtimeMs > this.#idleMs) {
            this.#known.delete(dir);
            await rm(dir, { recursive: true, force: true });
            removed.push(`${owner.name}/${entry.replace(/\.git$/, '')}`);
            return;
          }
          await rm(path.join(dir, PACKING), { recursive: true, force: true });
          await hostGit(['--git-dir', dir, ...SAFE, 'gc', '--auto', '--quiet']);
        });
      }
    }
    if (removed.length) this.#log.info({ mirrors: removed }, 'deleted git mirrors unused for long');
    return removed;
  }

  #collectIfDue(): void {
    if (this.#clock.now().getTime() - this.#lastCollect < COLLECT_INTERVAL_MS) return;
    this.#lastCollect = this.#clock.now().getTime();
    this.collect().catch((error) =>
      this.#log.warn({ err: errorMessage(error) }, 'git mirror collection failed'),
    );
  }

  #exclusive<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#queues.get(dir) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(dir, settled);
    void settled.then(() => {
      if (this.#queues.get(dir) === settled) this.#queues.delete(dir);
    });
    return run;
  }
}

/** No object takes fewer bytes in a pack (its header, a delta's base offset, an empty zlib stream). */
const MIN_PACKED_OBJECT_BYTES = 8;

/** Where a pack is made before it is read (inside the mirror, removed afterwards). */
const PACKING = 'airlock-packing';

/** One repository's mirror, used inside {@link GitMirrors.use}. */
export class Mirror {
  readonly dir: string;
  readonly #known: Map<string, Map<string, MirrorRef>>;

  constructor(dir: string, known: Map<string, Map<string, MirrorRef>>) {
    this.dir = dir;
    this.#known = known;
  }

  /**
   * Fetches every branch and tag of `url` into the mirror (making it first if need be), pruning
   * what upstream deleted. The token goes in a header from the environment only.
   */
  async fetch(url: string, token: string, signal?: AbortSignal): Promise<MirrorFetch> {
    const started = performance.now();
    const created = !(await exists(path.join(this.dir, 'HEAD')));
    if (created) {
      await mkdir(path.dirname(this.dir), { recursive: true, mode: 0o700 });
      await chmod(path.dirname(path.dirname(this.dir)), 0o700);
      // No template: no sample hooks, nothing but what git needs.
      await hostGit(['init', '--quiet', '--bare', '--template=', this.dir]);
    }
    const before = created
      ? new Map<string, MirrorRef>()
      : (this.#known.get(this.dir) ?? (await this.refs()));
    // Until this fetch has listed what it did, nothing is known (it may fail half-way).
    this.#known.delete(this.dir);
    await hostGit(
      [
        '--git-dir',
        this.dir,
        ...SAFE,
        'fetch',
        '--quiet',
        '--prune',
        '--no-tags',
        '--no-write-fetch-head',
        '--no-recurse-submodules',
        url,
        '+refs/heads/*:refs/heads/*',
        '+refs/tags/*:refs/tags/*',
      ],
      { auth: token, timeoutMs: FETCH_TIMEOUT_MS, ...(signal ? { signal } : {}) },
    ).catch(async (error: unknown) => {
      await this.#removeFetchLeftovers();
      throw error;
    });
    const refs = await this.refs();
    this.#known.set(this.dir, refs);
    const changed: MirrorFetch['changed'] = [];
    for (const ref of new Set([...before.keys(), ...refs.keys()])) {
      const from = before.get(ref)?.sha ?? null;
      const to = refs.get(ref)?.sha ?? null;
      if (from !== to) changed.push({ ref, from, to });
    }
    return { refs, changed, created, durationMs: performance.now() - started };
  }

  /**
   * What a fetch cut short (its timeout, the task's cancellation) leaves: the pack or loose objects
   * it was receiving (`tmp_*`, up to the whole repository, never collected before two weeks) and
   * the ref locks a killed git held (which would fail every later fetch). Nothing else writes to
   * the mirror meanwhile: its uses take turns.
   */
  async #removeFetchLeftovers(): Promise<void> {
    const objects = path.join(this.dir, 'objects');
    const dirs = (await readdir(objects).catch(() => [])).filter((name) => /^(pack|[0-9a-f]{2})$/.test(name));
    for (const sub of dirs) {
      const names = await readdir(path.join(objects, sub)).catch(() => []);
      for (const name of names.filter((n) => n.startsWith('tmp_')))
        await rm(path.join(objects, sub, name), { force: true });
    }
    const refs = await readdir(path.join(this.dir, 'refs'), { recursive: true }).catch(() => []);
    const locks = [...refs.map((name) => path.join('refs', name)), 'packed-refs.lock'];
    for (const lock of locks.filter((name) => name.endsWith('.lock')))
      await rm(path.join(this.dir, lock), { force: true });
  }

  /** The mirror's branches and tags. */
  async refs(): Promise<Map<string, MirrorRef>> {
    const listing = await hostGit([
      '--git-dir',
      this.dir,
      ...SAFE,
      'for-each-ref',
      '--format=%(objectname) %(refname) %(*objectname)',
      'refs/heads',
      'refs/tags',
    ]);
    const refs = new Map<string, MirrorRef>();
    for (const line of listing.stdout.split('\n')) {
      const [sha, name, peeled] = line.split(' ');
      if (!sha || !name) continue;
      refs.set(name, peeled ? { sha, peeled } : { sha });
    }
    return refs;
  }

  /** Which of `shas` the mirror has. */
  async present(shas: readonly string[]): Promise<Set<string>> {
    if (!shas.length) return new Set();
    const checked = await hostGit(
      ['--git-dir', this.dir, ...SAFE, 'cat-file', '--batch-check=%(objectname) %(objecttype)'],
      { input: `${shas.join('\n')}\n` },
    );
    return new Set(
      checked.stdout
        .split('\n')
        .filter((line) => line && !line.endsWith(' missing'))
        .map((line) => line.split(' ')[0]!),
    );
  }

  /** Which of the tags `tags` name commits reachable from any of `from` (as a fetch follows tags). */
  async tagsReachable(tags: readonly string[], from: readonly string[]): Promise<Set<string>> {
    if (!tags.length || !from.length) return new Set();
    const listed = await hostGit([
      '--git-dir',
      this.dir,
      ...SAFE,
      'for-each-ref',
      '--format=%(refname)',
      ...from.map((sha) => `--merged=${sha}`),
      'refs/tags',
    ]);
    const wanted = new Set(tags);
    return new Set(listed.stdout.split('\n').filter((name) => wanted.has(name)));
  }

  /**
   * A self-contained pack of every object reachable from `wants` and not from `haves` (each of
   * which the mirror has), with its index; `tooLarge` instead when the pack is over
   * `limits.maxBytes`, or (`inflated`, before any pack is made) when its objects hold more than
   * `limits.maxObjectBytes` before compression or are too many to fit in `maxBytes`.
   */
  async pack(
    wants: readonly string[],
    haves: readonly string[],
    limits: { maxBytes: number; maxObjectBytes: number },
  ): Promise<DeltaPack | { tooLarge: number; inflated?: { objects: number; bytes: number } }> {
    const revs = [...wants, ...haves.map((sha) => `^${sha}`)].join('\n').concat('\n');
    // Listing the objects and their sizes costs no more than a pack's own counting; packing them
    // costs with their size, whatever the mirror stores them as.
    const inflated = await this.#inflatedSize(revs, limits);
    if (
      inflated.objects * MIN_PACKED_OBJECT_BYTES > limits.maxBytes ||
      inflated.bytes > limits.maxObjectBytes
    )
      return { tooLarge: inflated.bytes, inflated };
    const dir = path.join(this.dir, PACKING, randomUUID());
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const made = await hostGit(
        [
          '--git-dir',
          this.dir,
          ...SAFE,
          'pack-objects',
          '--revs',
          '--quiet',
          '--delta-base-offset',
          path.join(dir, 'pack'),
        ],
        { input: revs },
      );
      const checksum = made.stdout.trim();
      if (!/^[0-9a-f]{40,64}$/.test(checksum))
        throw new ProcessError(`git pack-objects printed ${JSON.stringify(checksum)}, not a pack checksum`);
      const file = path.join(dir, `pack-${checksum}`);
      const size = (await stat(`${file}.pack`)).size;
      if (size > limits.maxBytes) return { tooLarge: size };
      const pack = await readFile(`${file}.pack`);
      return {
        name: `pack-${checksum}`,
        pack,
        idx: await readFile(`${file}.idx`),
        objects: pack.readUInt32BE(8),
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * How many objects `revs` (`git rev-list --stdin` lines) reach and their size before
   * compression; the sizes are not read when the objects are too many already.
   */
  async #inflatedSize(
    revs: string,
    limits: { maxBytes: number },
  ): Promise<{ objects: number; bytes: number }> {
    const listed = await hostGit(
      ['--git-dir', this.dir, ...SAFE, 'rev-list', '--objects', '--no-object-names', '--stdin'],
      { input: revs },
    );
    const objects = listed.stdout.split('\n').filter(Boolean);
    if (!objects.length || objects.length * MIN_PACKED_OBJECT_BYTES > limits.maxBytes)
      return { objects: objects.length, bytes: 0 };
    const sized = await hostGit(['--git-dir', this.dir, ...SAFE, 'cat-file', '--batch-check=%(objectsize)'], {
      input: `${objects.join('\n')}\n`,
    });
    let bytes = 0;
    for (const line of sized.stdout.split('\n')) if (line) bytes += Number(line);
    return { objects: objects.length, bytes };
  }

  async markUsed(now: Date): Promise<void> {
    const stamp = path.join(this.dir, USED_STAMP);
    if (!(await exists(this.dir))) return;
    await writeFile(stamp, '', { flag: 'a', mode: 0o600 });
    await utimes(stamp, now, now);
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
