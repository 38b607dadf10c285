import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/database.ts';
import { type AccessScope, ALL_REPOS } from '../../src/web/repo-access.ts';
import { TaskQuery } from '../../src/web/task-query.ts';
import { insertTask } from '../helpers/task-rows.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('the web’s task query on %s', (dialect) => {
  let store: Store;
  let query: TaskQuery;
  const ids: Record<string, string> = {};

  beforeEach(async () => {
    store = await openTestStore(dialect);
    query = new TaskQuery(store);
    const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString();
    // Widgets (id 7, installation 1), a renamed vault (id 9), and a local run (no repository id).
    ids.w1 = await insertTask(store, { repo_full_name: 'acme/widgets', repo_id: 7, created_at: at(1) });
    ids.w2 = await insertTask(store, {
      repo_full_name: 'acme/widgets',
      repo_id: 7,
      state: 'failed',
      actor_login: 'Bob',
      created_at: at(2),
    });
    ids.v1 = await insertTask(store, {
      repo_full_name: 'acme/vault-old-name',
      repo_id: 9,
      installation_id: 2,
      created_at: at(3),
    });
    ids.local = await insertTask(store, {
      repo_full_name: 'Someone/Local',
      repo_id: null,
      installation_id: null,
      kind: 'local',
      created_at: at(4),
    });
  });
  afterEach(async () => {
    await store.close();
  });

  const scope = (repoIds: number[], repoNames: string[] = []): AccessScope => ({
    all: false,
    repoIds: new Set(repoIds),
    repoNames: new Set(repoNames),
  });

  it('lists newest first within the scope, filtered, a page at a time, with the total', async () => {
    const all = await query.list(ALL_REPOS, {}, 1, 50);
    expect(all.tasks.map((t) => t.id)).toEqual([ids.local, ids.v1, ids.w2, ids.w1]);
    expect(all.total).toBe(4);
    const widgets = await query.list(scope([7]), {}, 1, 1);
    expect(widgets).toMatchObject({ total: 2, page: 1, perPage: 1 });
    expect(widgets.tasks.map((t) => t.id)).toEqual([ids.w2]);
    expect((await query.list(scope([7]), {}, 2, 1)).tasks.map((t) => t.id)).toEqual([ids.w1]);
    // By repository id, so a renamed repository keeps its tasks; tasks without an id by name.
    expect((await query.list(scope([9], ['someone/local']), {}, 1, 50)).tasks.map((t) => t.id)).toEqual([
      ids.local,
      ids.v1,
    ]);
    expect(await query.list(scope([]), {}, 1, 50)).toMatchObject({ tasks: [], total: 0 });
    // Filters ignore case where people type names.
    const filtered = await query.list(
      ALL_REPOS,
      { repo: 'ACME/Widgets', actor: 'bob', state: 'failed' },
      1,
      50,
    );
    expect(filtered.tasks.map((t) => t.id)).toEqual([ids.w2]);
  });

  it('finds a task only inside the scope, and lists the scope’s repositories and installations', async () => {
    expect((await query.find(scope([7]), ids.w1!))?.repoFullName).toBe('acme/widgets');
    expect(await query.find(scope([7]), ids.v1!)).toBeUndefined();
    expect(await query.find(ALL_REPOS, 'nosuchtask')).toBeUndefined();
    expect(await query.repositories(scope([7, 9]))).toEqual(['acme/vault-old-name', 'acme/widgets']);
    expect((await query.installationIds()).sort()).toEqual([1, 2]);
  });
});
