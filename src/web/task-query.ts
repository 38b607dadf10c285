import type { Db } from '../store/database.ts';
import type { Task, TaskState } from '../tasks/task.ts';
import { rowToTask } from '../tasks/task-store.ts';
import type { AccessScope } from './repo-access.ts';

/** The filters of the task list. */
export interface TaskListFilter {
  repo?: string | undefined;
  state?: TaskState | undefined;
  actor?: string | undefined;
}

/** One page of tasks and how many there are in all (within the viewer's scope). */
export interface TaskPage {
  tasks: Task[];
  total: number;
  page: number;
  perPage: number;
}

/** The SQL condition (and its arguments) that limits rows of `tasks` to a scope. */
function scopeSql(scope: AccessScope): { sql: string; args: unknown[] } {
  if (scope.all) return { sql: '1', args: [] };
  const ids = [...scope.repoIds];
  const names = [...scope.repoNames];
  if (ids.length === 0 && names.length === 0) return { sql: '0', args: [] };
  const idList = ids.length ? `repo_id IN (${ids.map(() => '?').join(', ')})` : '0';
  const nameList = names.length ? `lower(repo_full_name) IN (${names.map(() => '?').join(', ')})` : '0';
  return { sql: `(${idList} OR (repo_id IS NULL AND ${nameList}))`, args: [...ids, ...names] };
}

/**
 * Reads tasks for the web UI and the API, always inside a viewer's scope: a task outside it is
 * indistinguishable from one that does not exist.
 */
export class TaskQuery {
  readonly #db: Db;
  readonly #installations;

  constructor(db: Db) {
    this.#db = db;
    this.#installations = db.prepare(
      'SELECT DISTINCT installation_id AS id FROM tasks WHERE installation_id IS NOT NULL',
    );
  }

  /** The installations that tasks were recorded under (what a person's access is asked about). */
  installationIds(): number[] {
    return (this.#installations.all() as Array<{ id: number }>).map((r) => r.id);
  }

  /** One page of tasks, newest first. */
  list(scope: AccessScope, filter: TaskListFilter, page: number, perPage: number): TaskPage {
    const { sql, args } = this.#where(scope, filter);
    const total = (
      this.#db.prepare(`SELECT count(*) AS n FROM tasks WHERE ${sql}`).get(...args) as { n: number }
    ).n;
    const tasks = this.#db
      .prepare(`SELECT * FROM tasks WHERE ${sql} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`)
      .all(...args, perPage, (page - 1) * perPage)
      .map(rowToTask);
    return { tasks, total, page, perPage };
  }

  /** A task, if it exists and lies inside the scope. */
  find(scope: AccessScope, id: string): Task | undefined {
    const { sql, args } = scopeSql(scope);
    const row = this.#db.prepare(`SELECT * FROM tasks WHERE id = ? AND ${sql}`).get(id, ...args);
    return row ? rowToTask(row) : undefined;
  }

  /** The repositories with tasks inside the scope (for the filter menu). */
  repositories(scope: AccessScope): string[] {
    const { sql, args } = scopeSql(scope);
    return (
      this.#db
        .prepare(`SELECT DISTINCT repo_full_name AS name FROM tasks WHERE ${sql} ORDER BY name`)
        .all(...args) as Array<{ name: string }>
    ).map((r) => r.name);
  }

  #where(scope: AccessScope, filter: TaskListFilter): { sql: string; args: unknown[] } {
    const scoped = scopeSql(scope);
    const where = [scoped.sql];
    const args = [...scoped.args];
    if (filter.repo) where.push('lower(repo_full_name) = ?') && args.push(filter.repo.toLowerCase());
    if (filter.state) where.push('state = ?') && args.push(filter.state);
    if (filter.actor) where.push('lower(actor_login) = ?') && args.push(filter.actor.toLowerCase());
    return { sql: where.join(' AND '), args };
  }
}
