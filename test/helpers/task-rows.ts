import type { Insertable } from 'kysely';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import type { Store } from '../../src/store/database.ts';
import type { TasksTable } from '../../src/store/schema.ts';
import { newTaskId } from '../../src/tasks/task-store.ts';

type TaskFields = Partial<Insertable<TasksTable>> & { created_at: string };

/**
 * Writes a task row directly, on either database, for tests of what reads tasks (the web's task
 * query, retention, metrics) rather than of the task store itself.
 */
export async function insertTask(store: Store, fields: TaskFields): Promise<string> {
  const row = taskRow(fields);
  await store.db.insertInto('tasks').values(row).execute();
  return row.id;
}

/** A queued issue task's row of acme/widgets, with `fields` in place of those defaults. */
export function taskRow(fields: TaskFields): Insertable<TasksTable> & { id: string } {
  const id = fields.id ?? newTaskId();
  return {
    installation_id: 1,
    repo_full_name: 'acme/widgets',
    repo_id: 7,
    issue_number: 1,
    pr_number: null,
    kind: 'issue',
    state: 'queued',
    reason: null,
    branch: `airlock/issue-1-${id}`,
    base_ref: 'main',
    actor_login: 'alice',
    actor_id: 101,
    trigger_event: 'issues',
    trigger_url: null,
    delivery_id: null,
    instruction: null,
    parent_task_id: null,
    tracking_comment_id: null,
    check_run_id: null,
    head_sha: null,
    result_json: null,
    updated_at: fields.created_at,
    started_at: null,
    finished_at: null,
    thread_json: null,
    context_json: '{}',
    config_json: JSON.stringify(DEFAULT_REPO_CONFIG),
    start_json: JSON.stringify({ from: 'ref', ref: 'main' }),
    ...fields,
    id,
  };
}
