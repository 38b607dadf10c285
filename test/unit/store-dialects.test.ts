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

describe.each(DIALECTS)('transactions on %s', (dialect) => {
  let store: Store | null = null;
  afterEach(async () => {
    await store?.close();
    store = null;
  });
  const job = (kind: string) => ({
    kind,
    payload_json: '{}',
    status: 'pending' as const,
    not_before: 'a',
    created_at: 'b',
  });
  const kinds = async (s: Store) =>
    (await s.db.selectFrom('github_jobs').select('kind').orderBy('id').execute()).map((r) => r.kind);

  it('rolls back every write made through the store inside it, nested calls included', async () => {
    store = await openTestStore(dialect);
    const s = store;
    await expect(
      s.transaction(async () => {
        await s.db.insertInto('github_jobs').values(job('outer')).execute();
        await s.transaction(async () => {
          await s.db.insertInto('github_jobs').values(job('inner')).execute();
        });
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect(await kinds(s)).toEqual([]);
  });

  it('keeps other queries out of an open transaction until it commits', async () => {
    store = await openTestStore(dialect);
    const s = store;
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let inside: () => void = () => {};
    const entered = new Promise<void>((resolve) => {
      inside = resolve;
    });
    const committed = s.transaction(async () => {
      await s.db.insertInto('github_jobs').values(job('first')).execute();
      inside();
      await held;
    });
    await entered;
    const outside = s.db.insertInto('github_jobs').values(job('second')).execute();
    release();
    await Promise.all([committed, outside]);
    expect(await kinds(s)).toEqual(['first', 'second']);
  });

  it('runs after-commit hooks only once the transaction committed, and before-commit hooks inside it', async () => {
    store = await openTestStore(dialect);
    const s = store;
    const seen: string[] = [];
    await s.transaction(async () => {
      s.beforeCommit(async () => {
        seen.push(`before:${s.inTransaction()}`);
        await s.db.insertInto('github_jobs').values(job('hooked')).execute();
      });
      s.afterCommit(() => seen.push('after'));
      seen.push('body');
    });
    await expect(
      s.transaction(async () => {
        s.afterCommit(() => seen.push('never'));
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect(seen).toEqual(['body', 'before:true', 'after']);
    expect(await kinds(s)).toEqual(['hooked']);
  });

  it('sends work that was started inside a transaction and outlives it to the database', async () => {
    store = await openTestStore(dialect);
    const s = store;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let later: Promise<boolean> = Promise.resolve(true);
    await s.transaction(async () => {
      await s.db.insertInto('github_jobs').values(job('inside')).execute();
      // Left running, as a woken loop or a timer set inside a transaction is: same async context.
      later = (async () => {
        await gate;
        const inside = s.inTransaction();
        await s.db.insertInto('github_jobs').values(job('after')).execute();
        await s.transaction(async () => {
          await s.db.insertInto('github_jobs').values(job('own')).execute();
        });
        return inside;
      })();
    });
    release();
    expect(await later).toBe(false);
    expect(await kinds(s)).toEqual(['inside', 'after', 'own']);
  });

  it('gives two read-then-write transactions racing on one row the result of running them one after the other', async () => {
    store = await openTestStore(dialect);
    const s = store;
    await s.db.insertInto('github_jobs').values(job('counter')).execute();
    const bump = () =>
      s.transaction(async () => {
        const row = await s.db
          .selectFrom('github_jobs')
          .select('attempts')
          .where('id', '=', 1)
          .executeTakeFirstOrThrow();
        await new Promise((resolve) => setTimeout(resolve, 5));
        await s.db
          .updateTable('github_jobs')
          .set({ attempts: row.attempts + 1 })
          .where('id', '=', 1)
          .execute();
      });
    await Promise.all(Array.from({ length: 6 }, bump));
    const row = await s.db.selectFrom('github_jobs').select('attempts').executeTakeFirstOrThrow();
    expect(row.attempts).toBe(6);
  });
});
