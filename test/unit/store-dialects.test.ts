import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/database.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('the store on %s', (dialect) => {
  let store: Store | null = null;
  afterEach(async () => {
    await store?.close();
    store = null;
  });

  it('applies every migration and reads back what it writes', async () => {
    store = await openTestStore(dialect);
    const migrations = await store.db.selectFrom('schema_migrations').select('name').execute();
    expect(migrations.length).toBeGreaterThan(0);
    await store.db
      .insertInto('github_jobs')
      .values({ kind: 'k', payload_json: '{}', status: 'pending', not_before: 'a', created_at: 'b' })
      .execute();
    const [job] = await store.db.selectFrom('github_jobs').selectAll().execute();
    expect(job).toMatchObject({ id: 1, attempts: 0, status: 'pending' });
  });

  it('keeps audit events append-only', async () => {
    store = await openTestStore(dialect);
    await store.db
      .insertInto('audit_events')
      .values({ task_id: 't', seq: 1, ts: 'x', type: 'a', data_json: '{}', prev_hash: '', hash: 'h' })
      .execute();
    await expect(store.db.updateTable('audit_events').set({ type: 'b' }).execute()).rejects.toThrow(
      /append-only/,
    );
    await expect(store.db.deleteFrom('audit_events').execute()).rejects.toThrow(/append-only/);
  });

  it('delivers a notification to a listener', async () => {
    store = await openTestStore(dialect);
    let heard: (payload: string) => void = () => {};
    const got = new Promise<string>((resolve) => {
      heard = resolve;
    });
    await store.listen('airlock_test', heard);
    await store.notify('airlock_test', 'hello');
    await expect(got).resolves.toBe('hello');
  });
});
