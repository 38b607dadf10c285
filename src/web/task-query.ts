import { type ExpressionBuilder, type SqlBool, sql } from 'kysely';
import type { Store } from '../store/database.ts';
import type { Schema } from '../store/schema.ts';
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

type TasksEb = ExpressionBuilder<Schema, 'tasks'>;

/** The condition that limits rows of `tasks` to a scope. */
function inScope(eb: TasksEb, scope: AccessScope) {
  if (scope.all) return sql<SqlBool>`1 = 1`;
  const ids = [...scope.repoIds];
  const names = [...scope.repoNames];
  if (ids.length === 0 && names.length === 0) return sql<SqlBool>`1 = 0`;
  const either = [];
  if (ids.length) either.push(eb('repo_id', 'in', ids));
  if (names.length)
    either.push(eb.and([eb('repo_id', 'is', null), eb(eb.fn('lower', ['repo_full_name']), 'in', names)]));
  return eb.or(either);
}

/**
 * Reads tasks for the web UI and the API, always inside a viewer's scope: a task outside it is
 * indistinguishable from one that does not exist.
 */
export class TaskQuery {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** The installations that tasks were recorded under (what a person's access is asked about). */
  async installationIds(): Promise<number[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .select('installation_id')
      .distinct()
      .where('installation_id', 'is not', null)
      .execute();
    return rows.map((r) => r.installation_id!);
  }

  /** One page of tasks, newest first. */
  async list(scope: AccessScope, filter: TaskListFilter, page: number, perPage: number): Promise<TaskPage> {
    const where = (eb: TasksEb) => {
      const all = [inScope(eb, scope)];
      if (filter.repo) all.push(eb(eb.fn('lower', ['repo_full_name']), '=', filter.repo.toLowerCase()));
      if (filter.state) all.push(eb('state', '=', filter.state));
      if (filter.actor) all.push(eb(eb.fn('lower', ['actor_login']), '=', filter.actor.toLowerCase()));
      return eb.and(all);
    };
    const { n } = await this.#store.db
      .selectFrom('tasks')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where(where)
      .executeTakeFirstOrThrow();
    const rows = await this.#store.db
      .selectFrom('tasks')
      .selectAll()
      .where(where)
      .orderBy('created_at', 'desc')
      // Tasks created in the same millisecond: the later insert first on SQLite; by id on PostgreSQL,
      // whose rows have no insertion order.
      .orderBy(this.#store.dialect === 'sqlite' ? sql`rowid` : sql`id`, 'desc')
      .limit(perPage)
      .offset((page - 1) * perPage)
      .execute();
    return { tasks: rows.map(rowToTask), total: Number(n), page, perPage };
  }

  /** A task, if it exists and lies inside the scope. */
  async find(scope: AccessScope, id: string): Promise<Task | undefined> {
    const row = await this.#store.db
      .selectFrom('tasks')
      .selectAll()
      .where('id', '=', id)
      .where((eb) => inScope(eb, scope))
      .executeTakeFirst();
    return row ? rowToTask(row) : undefined;
  }

  /** The repositories with tasks inside the scope (for the filter menu). */
  async repositories(scope: AccessScope): Promise<string[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .select('repo_full_name')
      .distinct()
      .where((eb) => inScope(eb, scope))
      .orderBy('repo_full_name')
      .execute();
    return rows.map((r) => r.repo_full_name);
  }
}
