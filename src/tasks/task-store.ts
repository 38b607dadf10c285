import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { RepoConfig } from '../config/repo-config.ts';
import { TaskStateError } from '../errors.ts';
import type { Store } from '../store/database.ts';
import {
  ACTIVE_STATES,
  isTerminal,
  Task,
  type TaskContext,
  type TaskKind,
  type TaskResult,
  type TaskStart,
  TaskState,
  transitionAllowed,
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
 * Durable task storage, on either database. Every state change is written before the caller acts
 * on it, so a restart can always tell what was in flight; a transition is one conditional write
 * (the task must still be in a state the state machine lets it leave for the new one), so of two
 * processes moving a task out of one state, one wins and the other is refused.
 */
export class TaskStore {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #onQueued: (() => void) | undefined;

  /**
   * `onQueued` is called once a write that queued a task (created it queued, or moved it back to
   * the queue) has committed: workers on other hosts are told to claim at once.
   */
  constructor(store: Store, clock: Clock, options: { onQueued?: () => void } = {}) {
    this.#store = store;
    this.#clock = clock;
    this.#onQueued = options.onQueued;
  }

  /** Inserts a queued task (or one awaiting approval) and returns it. */
  async create(input: NewTask): Promise<Task> {
    const id = newTaskId();
    const now = this.#clock.now().toISOString();
    const row = await this.#store.db
      .insertInto('tasks')
      .values({
        id,
        installation_id: input.installationId,
        repo_full_name: input.repoFullName,
        repo_id: input.repoId,
        issue_number: input.issueNumber,
        pr_number: input.prNumber,
        kind: input.kind,
        state: input.state ?? 'queued',
        branch: input.branch ?? defaultBranchName(input, id),
        base_ref: input.baseRef,
        actor_login: input.actorLogin,
        actor_id: input.actorId,
        trigger_event: input.triggerEvent,
        trigger_url: input.triggerUrl,
        delivery_id: input.deliveryId,
        instruction: input.instruction,
        context_json: JSON.stringify(input.context),
        start_json: JSON.stringify(input.start),
        thread_json: input.thread ? JSON.stringify(input.thread) : null,
        config_json: JSON.stringify(input.config),
        parent_task_id: input.parentTaskId ?? null,
        attempt: input.attempt ?? 1,
        created_at: now,
        updated_at: now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    if (row.state === 'queued') this.#queued();
    return rowToTask(row);
  }

  #queued(): void {
    if (this.#onQueued) this.#store.afterCommit(this.#onQueued);
  }

  /** Reads one task; throws if it does not exist. */
  async get(id: string): Promise<Task> {
    const task = await this.find(id);
    if (!task) throw new TaskStateError(`task ${id} does not exist`);
    return task;
  }

  /** Reads one task, or undefined. */
  async find(id: string): Promise<Task | undefined> {
    const row = await this.#store.db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToTask(row) : undefined;
  }

  /**
   * Moves a task to `to` if the state machine allows it from the state the task is in when the
   * write happens and, when `from` is given, that state is one of `from`; throws a TaskStateError
   * otherwise (so two writers cannot both win). Ending a task withdraws the approval it waited for,
   * in the same transaction. Returns the updated task.
   */
  async transition(
    id: string,
    to: TaskState,
    options: { reason?: string | null; from?: readonly TaskState[] } = {},
  ): Promise<Task> {
    const leaving = TaskState.options.filter(
      (state) => transitionAllowed(state, to) && (!options.from || options.from.includes(state)),
    );
    const write = async (): Promise<Task> => {
      const now = this.#clock.now().toISOString();
      const row =
        leaving.length === 0
          ? undefined
          : await this.#store.db
              .updateTable('tasks')
              .set({
                state: to,
                updated_at: now,
                ...(options.reason != null ? { reason: options.reason } : {}),
                ...(to === 'starting' ? { started_at: now } : {}),
                ...(isTerminal(to) ? { finished_at: now } : {}),
              })
              .where('id', '=', id)
              .where('state', 'in', leaving)
              .returningAll()
              .executeTakeFirst();
      if (!row) throw await this.#refusal(id, to, options.from);
      // A task that ends waits for no one: an approval still pending is withdrawn with it.
      if (isTerminal(to))
        await this.#store.db
          .updateTable('approvals')
          .set({ state: 'withdrawn', channel: 'cancel', decided_at: now })
          .where('task_id', '=', id)
          .where('state', '=', 'pending')
          .execute();
      if (to === 'queued') this.#queued();
      return rowToTask(row);
    };
    return isTerminal(to) ? this.#store.transaction(write) : write();
  }

  /** Records GitHub object ids and results as they become known. */
  async update(
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
  ): Promise<Task> {
    const columns = Object.fromEntries(
      Object.entries({
        tracking_comment_id: fields.trackingCommentId,
        check_run_id: fields.checkRunId,
        head_sha: fields.headSha,
        pr_number: fields.prNumber,
        result_json: fields.result ? JSON.stringify(fields.result) : undefined,
        base_ref: fields.baseRef,
        context_json: fields.context ? JSON.stringify(fields.context) : undefined,
      }).filter(([, v]) => v !== undefined),
    );
    if (Object.keys(columns).length === 0) return this.get(id);
    const row = await this.#store.db
      .updateTable('tasks')
      .set({ ...columns, updated_at: this.#clock.now().toISOString() })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new TaskStateError(`task ${id} does not exist`);
    return rowToTask(row);
  }

  /** Lists tasks, newest first. */
  async list(filter: TaskFilter = {}): Promise<Task[]> {
    let query = this.#store.db.selectFrom('tasks').selectAll();
    if (filter.repoFullName) query = query.where('repo_full_name', '=', filter.repoFullName);
    if (filter.state) query = query.where('state', '=', filter.state);
    if (filter.actorLogin) query = query.where('actor_login', '=', filter.actorLogin);
    if (filter.issueNumber !== undefined) query = query.where('issue_number', '=', filter.issueNumber);
    if (filter.prNumber !== undefined) query = query.where('pr_number', '=', filter.prNumber);
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('seq', 'desc')
      .limit(filter.limit ?? 100)
      .offset(filter.offset ?? 0)
      .execute();
    return rows.map(rowToTask);
  }

  /** Queued tasks in arrival order. */
  async queued(limit = 100): Promise<Task[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .selectAll()
      .where('state', '=', 'queued')
      .orderBy('created_at')
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map(rowToTask);
  }

  /** Tasks that hold (or may hold) a VM, a proxy listener and a token. */
  async active(): Promise<Task[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .selectAll()
      .where('state', 'in', ACTIVE_STATES)
      .orderBy('created_at')
      .orderBy('seq')
      .execute();
    return rows.map(rowToTask);
  }

  /** Whether airlock created `branch` and opened pull request `prNumber` from it (a task on it says so). */
  async openedPull(repoFullName: string, branch: string, prNumber: number): Promise<boolean> {
    const row = await this.#store.db
      .selectFrom('tasks')
      .select('id')
      .where('repo_full_name', '=', repoFullName)
      .where('branch', '=', branch)
      .where('pr_number', '=', prNumber)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Every task on a branch, oldest first (for summaries of earlier work). */
  async onBranch(repoFullName: string, branch: string): Promise<Task[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .selectAll()
      .where('repo_full_name', '=', repoFullName)
      .where('branch', '=', branch)
      .orderBy('created_at')
      .orderBy('seq')
      .execute();
    return rows.map(rowToTask);
  }

  /** Why a transition wrote nothing, as the error to throw. */
  async #refusal(id: string, to: TaskState, from: readonly TaskState[] | undefined): Promise<TaskStateError> {
    const current = await this.find(id);
    if (!current) return new TaskStateError(`task ${id} does not exist`);
    if (from && !from.includes(current.state))
      return new TaskStateError(`task ${id} is ${current.state}, expected ${from.join(' or ')}`);
    if (!transitionAllowed(current.state, to))
      return new TaskStateError(`task ${id} cannot move from ${current.state} to ${to}`);
    // Moved by another writer between the update and this read, to a state it may leave again.
    return new TaskStateError(`task ${id} changed state while moving to ${to} (it is now ${current.state})`);
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
