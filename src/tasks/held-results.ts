import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { AuditEvent } from '../audit/audit-event.ts';
import type { Clock } from '../clock.ts';
import { ProcessError } from '../errors.ts';
import { hostGit as git } from '../git/host-git.ts';
import type { Store } from '../store/database.ts';
import { ChangedFile, type PushShown } from './approval-store.ts';
import { type Task, TERMINAL_STATES } from './task.ts';

/** The most of a held patch kept in the record (the bundle holds the whole result). */
const PATCH_MAX_BYTES = 2 * 1024 * 1024;
/** Where the base a task started from is kept in its held repository. */
const BASE_REF = 'refs/airlock/base';

/** A held result as recorded. */
export interface HeldResult {
  taskId: string;
  baseSha: string | null;
  headSha: string;
  repoPath: string;
  bundlePath: string;
  bundleSha256: string;
  diffStat: string;
  patch: string;
  patchTruncated: boolean;
  files: ChangedFile[];
  heldAt: string;
  discardedAt: string | null;
}

/** The ref a task's workspace starts from upstream, as its clone fetches it. */
export function upstreamStartRef(task: Pick<Task, 'start' | 'branch'>): string {
  if (task.start.from === 'own_branch') return `refs/heads/${task.branch}`;
  if (task.start.from === 'ref') return `refs/heads/${task.start.ref}`;
  return `refs/pull/${task.start.pull}/head`;
}

/**
 * Results kept on the host until a person approves pushing them (`approval.before_push: always`).
 * Each task has a bare repository under `<data>/held/`: the host fetches the task's starting point
 * into it before the VM runs; the task's proxy receives the agent's push into it instead of
 * forwarding it (the token is never used for that push); the host then computes the diff, the
 * files and a git bundle from it. Approval pushes exactly the held commit upstream with a freshly
 * minted token; rejection or expiry deletes it.
 */
export class HeldResults {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #dir: string;

  constructor(store: Store, clock: Clock, dataDir: string) {
    this.#store = store;
    this.#clock = clock;
    this.#dir = path.join(dataDir, 'held');
  }

  /** The bare repository a task's held push is received into. */
  repoPath(taskId: string): string {
    return path.join(this.#dir, `${taskId}.git`);
  }

  /**
   * Creates a task's held repository and fetches its starting point into it (so the agent's push
   * carries only new objects, and the diff has a base the host observed). A start ref that does
   * not exist upstream leaves the repository empty: the push then carries the whole history.
   */
  async prepare(task: Task, upstreamUrl: string, token: () => Promise<string>): Promise<void> {
    const repo = this.repoPath(task.id);
    await rm(repo, { recursive: true, force: true });
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await git(['init', '--quiet', '--bare', repo], {});
    const fetched = await git(
      [
        '--git-dir',
        repo,
        'fetch',
        '--quiet',
        '--no-tags',
        upstreamUrl,
        `+${upstreamStartRef(task)}:${BASE_REF}`,
      ],
      { auth: await token(), okExitCodes: [0, 128] },
    );
    if (fetched.exitCode !== 0 && !/couldn't find remote ref|not our ref/i.test(fetched.stderr))
      throw new ProcessError(`fetching ${upstreamStartRef(task)} into the held repository failed`, {
        exitCode: fetched.exitCode,
        stderr: fetched.stderr,
      });
  }

  /**
   * Records the result a task's proxy received at `head`: checks the held repository's branch is
   * there, computes the diff against the base the host fetched, writes the bundle, and returns
   * what an approver is shown (with the commands and hosts from the task's record).
   */
  async hold(task: Task, head: string, events: readonly AuditEvent[]): Promise<PushShown> {
    const repo = this.repoPath(task.id);
    const at = ['--git-dir', repo];
    const branchHead = (
      await git([...at, 'rev-parse', '--verify', `refs/heads/${task.branch}^{commit}`], {})
    ).stdout.trim();
    if (branchHead !== head)
      throw new ProcessError(
        `the held repository's ${task.branch} is at ${branchHead}, not the pushed ${head}`,
      );
    const base = await git([...at, 'rev-parse', '--verify', '--quiet', `${BASE_REF}^{commit}`], {
      okExitCodes: [0, 1],
    });
    const baseSha = base.exitCode === 0 ? base.stdout.trim() : null;
    const from = baseSha
      ? (await git([...at, 'merge-base', baseSha, head], { okExitCodes: [0, 1] })).stdout.trim() || null
      : null;
    // Against the empty tree when nothing upstream was fetched: everything is new.
    const left = from ?? (await git([...at, 'hash-object', '-t', 'tree', '/dev/null'], {})).stdout.trim();
    const diffStat = (await git([...at, 'diff', '--stat=120', left, head], {})).stdout;
    const numstat = (await git([...at, 'diff', '--numstat', '-z', left, head], {})).stdout;
    const fullPatch = (await git([...at, 'diff', left, head], {})).stdout;
    const patchTruncated = Buffer.byteLength(fullPatch) > PATCH_MAX_BYTES;
    const patch = patchTruncated
      ? Buffer.from(fullPatch).subarray(0, PATCH_MAX_BYTES).toString('utf8')
      : fullPatch;
    const bundlePath = path.join(this.#dir, `${task.id}.bundle`);
    const range = from ? [`${from}..refs/heads/${task.branch}`] : [`refs/heads/${task.branch}`];
    await git([...at, 'bundle', 'create', '--quiet', bundlePath, ...range], {});
    const bundle = await readFile(bundlePath);
    const bundleSha256 = createHash('sha256').update(bundle).digest('hex');
    const files = parseNumstat(numstat);
    const row = {
      task_id: task.id,
      base_sha: from,
      head_sha: head,
      repo_path: repo,
      bundle_path: bundlePath,
      bundle_sha256: bundleSha256,
      bundle,
      diff_stat: diffStat,
      patch,
      patch_truncated: patchTruncated ? 1 : 0,
      files_json: JSON.stringify(files),
      held_at: this.#clock.now().toISOString(),
      discarded_at: null,
    };
    // A task holds one result: a later hold replaces the record of the earlier.
    const { task_id: _, ...replaced } = row;
    await this.#store.db
      .insertInto('held_results')
      .values(row)
      .onConflict((oc) => oc.column('task_id').doUpdateSet(replaced))
      .execute();
    return {
      gate: 'push',
      base: from,
      head,
      diffStat: diffStat.trim(),
      files,
      patchSha256: createHash('sha256').update(fullPatch).digest('hex'),
      commands: commandsRun(events),
      hosts: hostsReached(events),
    };
  }

  /** A task's held result, if one was recorded. */
  async get(taskId: string): Promise<HeldResult | undefined> {
    const r = await this.#store.db
      .selectFrom('held_results')
      .select([
        'task_id',
        'base_sha',
        'head_sha',
        'repo_path',
        'bundle_path',
        'bundle_sha256',
        'diff_stat',
        'patch',
        'patch_truncated',
        'files_json',
        'held_at',
        'discarded_at',
      ])
      .where('task_id', '=', taskId)
      .executeTakeFirst();
    if (!r) return undefined;
    return {
      taskId: r.task_id,
      baseSha: r.base_sha,
      headSha: r.head_sha,
      repoPath: r.repo_path,
      bundlePath: r.bundle_path,
      bundleSha256: r.bundle_sha256,
      diffStat: r.diff_stat,
      patch: r.patch,
      patchTruncated: r.patch_truncated === 1,
      files: z.array(ChangedFile).parse(JSON.parse(r.files_json)),
      heldAt: r.held_at,
      discardedAt: r.discarded_at,
    };
  }

  /**
   * Pushes exactly the held commit to the task's branch upstream, with `token` (minted for this
   * push). Not forced: a branch that moved upstream while the result waited refuses it. Run on
   * another host than the one that held it (with several workers, whichever claims the approved
   * task), it first rebuilds the held repository here from the bundle kept in the database.
   */
  async release(task: Task, upstreamUrl: string, token: string, signal?: AbortSignal): Promise<string> {
    const held = await this.get(task.id);
    if (!held || held.discardedAt) throw new ProcessError(`task ${task.id} holds no result to push`);
    // This host's held repository, if it held the result (the record names the holder's path).
    const repo = existsSync(this.repoPath(task.id))
      ? this.repoPath(task.id)
      : await this.#fromBundle(task, held, upstreamUrl, token, signal);
    const pushed = await git(
      ['--git-dir', repo, 'push', '--quiet', upstreamUrl, `${held.headSha}:refs/heads/${task.branch}`],
      { auth: token, okExitCodes: [0, 1], ...(signal ? { signal } : {}) },
    );
    if (pushed.exitCode !== 0)
      throw new ProcessError(
        `pushing the approved commit ${held.headSha.slice(0, 12)} to ${task.branch} was refused`,
        {
          exitCode: pushed.exitCode,
          stderr: pushed.stderr,
        },
      );
    return held.headSha;
  }

  /**
   * The held repository rebuilt on this host: the task's starting point fetched from upstream (as
   * when it was held), then the held commits from the bundle the database keeps, checked against
   * the digest recorded when it was held.
   */
  async #fromBundle(
    task: Task,
    held: HeldResult,
    upstreamUrl: string,
    token: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const row = await this.#store.db
      .selectFrom('held_results')
      .select('bundle')
      .where('task_id', '=', task.id)
      .executeTakeFirst();
    const bundle = row?.bundle ? Buffer.from(row.bundle) : undefined;
    if (!bundle)
      throw new ProcessError(`task ${task.id}'s held result is on another host, and its bundle is not kept`);
    if (createHash('sha256').update(bundle).digest('hex') !== held.bundleSha256)
      throw new ProcessError(
        `task ${task.id}'s held bundle does not match the digest recorded when it was held`,
      );
    await this.prepare(task, upstreamUrl, async () => token);
    const repo = this.repoPath(task.id);
    const file = path.join(this.#dir, `${task.id}.bundle`);
    await writeFile(file, bundle, { mode: 0o600 });
    const branch = `refs/heads/${task.branch}`;
    const fetched = await git(['--git-dir', repo, 'fetch', '--quiet', file, `+${branch}:${branch}`], {
      okExitCodes: [0, 1, 128],
      ...(signal ? { signal } : {}),
    });
    if (fetched.exitCode !== 0)
      throw new ProcessError(
        `the held commits of task ${task.id} could not be applied on this host (is the commit they start from still upstream?)`,
        { exitCode: fetched.exitCode, stderr: fetched.stderr },
      );
    const at = (
      await git(['--git-dir', repo, 'rev-parse', '--verify', `${branch}^{commit}`], {})
    ).stdout.trim();
    if (at !== held.headSha)
      throw new ProcessError(
        `the held bundle of task ${task.id} gives ${at}, not the approved ${held.headSha}`,
      );
    return repo;
  }

  /**
   * Deletes this host's held repositories and bundles whose result was discarded, perhaps by
   * another process (with several workers, the approved push or the task's ending may happen
   * elsewhere). Run when airlock starts; returns the task ids whose files went.
   */
  async removeDiscarded(): Promise<string[]> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    const ids = [...new Set(names.map((n) => n.replace(/\.(git|bundle)$/, '')))];
    if (ids.length === 0) return [];
    // Kept: a task still under way (prepared, or waiting for approval) whose result is not discarded.
    const open = await this.#store.db
      .selectFrom('tasks')
      .leftJoin('held_results', 'held_results.task_id', 'tasks.id')
      .select('tasks.id')
      .where('tasks.id', 'in', ids)
      .where('tasks.state', 'not in', TERMINAL_STATES)
      .where('held_results.discarded_at', 'is', null)
      .execute();
    const live = new Set(open.map((r) => r.id));
    const gone = ids.filter((id) => !live.has(id));
    for (const id of gone) {
      await rm(this.repoPath(id), { recursive: true, force: true });
      await rm(path.join(this.#dir, `${id}.bundle`), { force: true });
    }
    return gone;
  }

  /** Deletes a task's held repository and bundle; the record of what was held stays. */
  async discard(taskId: string): Promise<boolean> {
    const repo = this.repoPath(taskId);
    const existed = await stat(repo).then(
      () => true,
      () => false,
    );
    await rm(repo, { recursive: true, force: true });
    await rm(path.join(this.#dir, `${taskId}.bundle`), { force: true });
    await this.#store.db
      .updateTable('held_results')
      .set({ discarded_at: this.#clock.now().toISOString(), bundle: null })
      .where('task_id', '=', taskId)
      .where('discarded_at', 'is', null)
      .execute();
    return existed;
  }
}

function parseNumstat(text: string): ChangedFile[] {
  const files: ChangedFile[] = [];
  const parts = text.split('\0');
  for (let i = 0; i < parts.length; i++) {
    const entry = parts[i]!;
    if (!entry) continue;
    const [added, deleted, name] = entry.split('\t') as [string, string, string];
    // A rename is `added\tdeleted\t` followed by the old and new paths as their own fields.
    const file = name === '' ? `${parts[++i]} → ${parts[++i]}` : name;
    files.push({
      path: file,
      added: added === '-' ? null : Number(added),
      deleted: deleted === '-' ? null : Number(deleted),
    });
  }
  return files;
}

/** The commands a task's VM ran, from its exec audit, in order. */
export function commandsRun(events: readonly AuditEvent[]): string[] {
  return events
    .filter((e) => e.type === 'vm.exec' && Array.isArray(e.data.argv))
    .map((e) => (e.data.argv as unknown[]).map(String).join(' ').slice(0, 500));
}

/** The hosts the proxy let a task reach beyond git and the model API, each once. */
export function hostsReached(events: readonly AuditEvent[]): string[] {
  const hosts = events
    .filter((e) => e.type === 'proxy.egress' && e.data.decision === 'allowed')
    .map(
      (e) => `${String(e.data.host)}${e.data.port && e.data.port !== 443 ? `:${String(e.data.port)}` : ''}`,
    );
  return [...new Set(hosts)];
}
