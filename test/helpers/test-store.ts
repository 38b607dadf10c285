import pg from 'pg';
import { afterEach, inject } from 'vitest';
import { type Dialect, openStore, type Store } from '../../src/store/database.ts';

/** The databases every store test runs on. */
export const DIALECTS: readonly Dialect[] = ['sqlite', 'postgres'];

/**
 * A new, empty, migrated database for one test: an in-memory SQLite, or a fresh database in the
 * run's PostgreSQL cluster (test/helpers/postgres-global.ts).
 */
export async function openTestStore(dialect: Dialect): Promise<Store> {
  if (dialect === 'sqlite') return openStore({ file: ':memory:' });
  return openStore({ url: await createTestDatabase() });
}

/**
 * For a describe block: returns `open`, which makes a new test store on `dialect`; every store it
 * made is closed after each test.
 */
export function testStores(dialect: Dialect): () => Promise<Store> {
  let opened: Store[] = [];
  afterEach(async () => {
    await Promise.all(opened.map((store) => store.close()));
    opened = [];
  });
  return async () => {
    const store = await openTestStore(dialect);
    opened.push(store);
    return store;
  };
}

/** Creates an empty database in the run's PostgreSQL cluster and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const admin = inject('postgresUrl');
  const name = `t_${Math.random().toString(36).slice(2, 12)}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}
