import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { RepoConfig } from '../config/repo-config.ts';
import { TaskStateError } from '../errors.ts';
import type { Db } from '../store/database.ts';
import {
  ACTIVE_STATES,
  assertTransition,
  isTerminal,
  Task,
  type TaskContext,
  type TaskKind,
  type TaskResult,
  type TaskStart,
  type TaskState,
} from './task.ts';
import type { IssueThread } from './task-thread.ts';

/** What it takes to create a task. */
export interface NewTask {
  installationId: number | null;
  repoFullName: string;
  repoId: number | null;
  issueNumber: number | null;
  prNumber: number | null;
  kind: TaskKind;
  branch?: string;
  baseRef: string | null;
  actorLogin: string;
  actorId: number | null;
  triggerEvent: string;
  triggerUrl: string | null;
  deliveryId: string | null;
  instruction: string | null;
  context: TaskContext;
  start: TaskStart;
  thread?: IssueThread | null;
  config: RepoConfig;
  parentTaskId?: string | null;
  attempt?: number;
  /** `awaiting_approval` when the task must be approved before it runs (queued otherwise). */
  state?: 'queued' | 'awaiting_approval';
}

/** Filters for listing tasks. */
export interface TaskFilter {
  repoFullName?: string;
  state?: TaskState;
  actorLogin?: string;
  issueNumber?: number;
  prNumber?: number;
  limit?: number;
  offset?: number;
}

/** A 10-character id from an alphabet that is safe in branch names and URLs. */
export function newTaskId(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(10);
  let id = '';
  for (const byte of bytes) id += alphabet[byte % alphabet.length];
  return id;
}

/**
 * Durable task storage. Every state change is written (and validated against the state machine)
 * before the caller acts on it, so a restart can always tell what was in flight.
 */
export class TaskStore {
  readonly #db: Db;
  readonly #clock: Clock;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Inserts a queued task and returns it. */
  create(input: NewTask): Task {
    const id = newTaskId();
    const now = this.#clock.now().toISOString();
    const branch = input.branch ?? defaultBranchName(input, id);
    this.#db
      .prepare(
        `INSERT INTO tasks (id, installation_id, repo_full_name, repo_id, issue_number, pr_number, kind, state, branch,
           base_ref, actor_login, actor_id, trigger_event, trigger_url, delivery_id, instruction, context_json, start_json,
           thread_json, config_json, parent_task_id, attempt, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        input.installationId,
        input.repoFullName,
        input.repoId,
        input.issueNumber,
        input.prNumber,
        input.kind,
        input.state ?? 'queued',
        branch,
        input.baseRef,
        input.actorLogin,
        input.actorId,
        input.triggerEvent,
        input.triggerUrl,
        input.deliveryId,
        input.instruction,
        JSON.stringify(input.context),
        JSON.stringify(input.start),
        input.thread ? JSON.stringify(input.thread) : null,
        JSON.stringify(input.config),
        input.parentTaskId ?? null,
        input.attempt ?? 1,
        now,
        now,
      );
    return this.get(id);
  }

  /** Reads one task; throws if it does not exist. */
  get(id: string): Task {
    const task = this.find(id);
    if (!task) throw new TaskStateError(`task ${id} does not exist`);
    return task;
  }

  /** Reads one task, or undefined. */
  find(id: string): Task | undefined {
    const row = this.#db.prepare('SELECT * FROM tasks WHERE id = ?').get(id);
    return row ? rowToTask(row) : undefined;
  }

  /**
   * Moves a task to `to`, checking the state machine and, when given, that it is still in one of
   * `from` (so two writers cannot both win). Returns the updated task.
   */
  transition(
    id: string,
    to: TaskState,
    options: { reason?: string | null; from?: readonly TaskState[] } = {},
  ): Task {
    return this.#db.transaction(() => {
      const current = this.get(id);
      if (options.from && !options.from.includes(current.state)) {
        throw new TaskStateError(`task ${id} is ${current.state}, expected ${options.from.join(' or ')}`);
      }
      assertTransition(id, current.state, to);
      const now = this.#clock.now().toISOString();
      this.#db
        .prepare(
          `UPDATE tasks SET state = ?, reason = COALESCE(?, reason), updated_at = ?,
             started_at = CASE WHEN ? = 'starting' THEN ? ELSE started_at END,
             finished_at = CASE WHEN ? THEN ? ELSE finished_at END
           WHERE id = ?`,
        )
        .run(to, options.reason ?? null, now, to, now, isTerminal(to) ? 1 : 0, now, id);
      // A task that ends waits for no one: an approval still pending is withdrawn with it.
      if (isTerminal(to))
        this.#db
          .prepare(
            `UPDATE approvals SET state = 'withdrawn', channel = 'cancel', decided_at = ? WHERE task_id = ? AND state = 'pending'`,
          )
          .run(now, id);
      return this.get(id);
    })();
  }

  /** Records GitHub object ids and results as they become known. */
  update(
    id: string,
    fields: Partial<{
      trackingCommentId: number;
      checkRunId: number;
      headSha: string;
      prNumber: number;
      result: TaskResult;
      baseRef: string;
      context: TaskContext;
    }>,
  ): Task {
    const columns: Record<string, unknown> = {
      tracking_comment_id: fields.trackingCommentId,
      check_run_id: fields.checkRunId,
      head_sha: fields.headSha,
      pr_number: fields.prNumber,
      result_json: fields.result ? JSON.stringify(fields.result) : undefined,
      base_ref: fields.baseRef,
      context_json: fields.context ? JSON.stringify(fields.context) : undefined,
    };
    const set = Object.entries(columns).filter(([, v]) => v !== undefined);
    if (set.length === 0) return this.get(id);
    this.#db
      .prepare(`UPDATE tasks SET ${set.map(([k]) => `${k} = ?`).join(', ')}, updated_at = ? WHERE id = ?`)
      .run(...set.map(([, v]) => v), this.#clock.now().toISOString(), id);
    return this.get(id);
  }

  /** Lists tasks, newest first. */
  list(filter: TaskFilter = {}): Task[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.repoFullName) where.push('repo_full_name = ?') && args.push(filter.repoFullName);
    if (filter.state) where.push('state = ?') && args.push(filter.state);
    if (filter.actorLogin) where.push('actor_login = ?') && args.push(filter.actorLogin);
    if (filter.issueNumber !== undefined) where.push('issue_number = ?') && args.push(filter.issueNumber);
    if (filter.prNumber !== undefined) where.push('pr_number = ?') && args.push(filter.prNumber);
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`;
    return this.#db
      .prepare(sql)
      .all(...args, filter.limit ?? 100, filter.offset ?? 0)
      .map(rowToTask);
  }

  /** Queued tasks in arrival order. */
  queued(limit = 100): Task[] {
    return this.#db
      .prepare(`SELECT * FROM tasks WHERE state = 'queued' ORDER BY created_at, rowid LIMIT ?`)
      .all(limit)
      .map(rowToTask);
  }

  /** Tasks that hold (or may hold) a VM, a proxy listener and a token. */
  active(): Task[] {
    const marks = ACTIVE_STATES.map(() => '?').join(', ');
    return this.#db
      .prepare(`SELECT * FROM tasks WHERE state IN (${marks}) ORDER BY created_at`)
      .all(...ACTIVE_STATES)
      .map(rowToTask);
  }

  /** Whether airlock created `branch` and opened pull request `prNumber` from it (a task on it says so). */
  openedPull(repoFullName: string, branch: string, prNumber: number): boolean {
    return (
      this.#db
        .prepare('SELECT 1 FROM tasks WHERE repo_full_name = ? AND branch = ? AND pr_number = ? LIMIT 1')
        .get(repoFullName, branch, prNumber) !== undefined
    );
  }

  /** Every task on a branch, oldest first (for summaries of earlier work). */
  onBranch(repoFullName: string, branch: string): Task[] {
    return this.#db
      .prepare('SELECT * FROM tasks WHERE repo_full_name = ? AND branch = ? ORDER BY created_at, rowid')
      .all(repoFullName, branch)
      .map(rowToTask);
  }

  /** Runs `fn` in one SQLite transaction. */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }
}

function defaultBranchName(input: NewTask, id: string): string {
  if (input.issueNumber !== null && input.kind !== 'local') return `airlock/issue-${input.issueNumber}-${id}`;
  return `airlock/task-${id}`;
}

/** Parses a `tasks` row (SELECT *) into a Task. */
export function rowToTask(row: unknown): Task {
  const r = row as Record<string, unknown>;
  return Task.parse({
    id: r.id,
    installationId: r.installation_id,
    repoFullName: r.repo_full_name,
    repoId: r.repo_id,
    issueNumber: r.issue_number,
    prNumber: r.pr_number,
    kind: r.kind,
    state: r.state,
    reason: r.reason,
    branch: r.branch,
    baseRef: r.base_ref,
    actorLogin: r.actor_login,
    actorId: r.actor_id,
    triggerEvent: r.trigger_event,
    triggerUrl: r.trigger_url,
    deliveryId: r.delivery_id,
    instruction: r.instruction,
    context: JSON.parse(String(r.context_json)),
    start: JSON.parse(String(r.start_json)),
    thread: r.thread_json ? JSON.parse(String(r.thread_json)) : null,
    config: JSON.parse(String(r.config_json)),
    parentTaskId: r.parent_task_id,
    attempt: r.attempt,
    trackingCommentId: r.tracking_comment_id,
    checkRunId: r.check_run_id,
    headSha: r.head_sha,
    result: r.result_json ? JSON.parse(String(r.result_json)) : null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  });
}
