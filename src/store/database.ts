import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { Schema } from './schema.ts';
import { SerialSqliteDialect } from './sqlite-dialect.ts';

export type Db = Database.Database;
export type Dialect = 'sqlite' | 'postgres';
/** The typed query builder over airlock's tables, on either database. */
export type Kdb = Kysely<Schema>;

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Where the database is: an embedded SQLite file (or ':memory:'), or a PostgreSQL URL. */
export type StoreLocation = { file: string } | { url: string };

/**
 * airlock's database, whichever engine holds it: the query builder every store uses, ambient
 * transactions, and notifications between processes (PostgreSQL LISTEN/NOTIFY; in-process on
 * SQLite, where one process is all there is).
 */
export interface Store {
  readonly dialect: Dialect;
  /**
   * The query builder: inside `transaction()` (in the same async context) it is that transaction,
   * so every store's writes there commit or roll back together; elsewhere, the database.
   */
  readonly db: Kdb;
  /** The embedded connection, on SQLite only (its checkpointer uses it). */
  readonly sqlite: Db | null;
  /**
   * PostgreSQL only: a query builder outside any transaction, on connections of its own, for a
   * read that must see what is committed now while the current transaction's snapshot is older
   * (a serializable transaction's; the audit chain's head once its lock is held). Only for plain
   * reads, which wait on nothing. Null on SQLite, where a transaction holds the write lock from its
   * start and so sees everything committed.
   */
  readonly committed: Kdb | null;
  /**
   * Runs `fn` in one transaction, every store's queries in it included (see `db`); a call inside
   * another transaction joins it. On PostgreSQL the transaction is serializable and re-run, up to
   * a few times, when the database reports a conflict, so `fn` must only read and write the
   * database; what else should follow the commit goes in `afterCommit`. `readCommitted` asks
   * PostgreSQL for READ COMMITTED instead, for a body that takes its own locks first (an advisory
   * lock, `FOR UPDATE SKIP LOCKED`) and must then read what committed while it waited.
   */
  transaction<T>(fn: () => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** True inside `transaction()`. */
  inTransaction(): boolean;
  /**
   * Runs `fn` inside the current transaction just before it commits (after the body), or throws
   * outside one. Used to write what was queued during the body (audit events).
   */
  beforeCommit(fn: () => Promise<void>): void;
  /** Runs `fn` once the current transaction has committed (at once outside one). */
  afterCommit(fn: () => void): void;
  /** Tells every listener of `channel`, in every process on this database. */
  notify(channel: string, payload?: string): Promise<void>;
  /** Calls `onMessage` for each notification on `channel` until the returned stop is called. */
  listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface TransactionOptions {
  /** PostgreSQL only: READ COMMITTED rather than SERIALIZABLE (see Store.transaction). */
  readCommitted?: boolean;
}

interface Ambient {
  trx: Transaction<Schema>;
  before: Array<() => Promise<void>>;
  after: Array<() => void>;
  /**
   * False once the transaction has ended. Work started inside it and still running after (a loop
   * woken, a promise left to settle) keeps the context it was started in; it must see no
   * transaction then, not one that has committed.
   */
  open: boolean;
}

/** How often a serializable transaction is tried when PostgreSQL reports a conflict. */
const SERIALIZATION_TRIES = 8;

/** The parts of a Store that are the same on both engines: ambient transactions. */
function transactions(base: Kdb, dialect: Dialect) {
  const ambient = new AsyncLocalStorage<Ambient>();
  const live = (): Ambient | undefined => {
    const here = ambient.getStore();
    return here?.open ? here : undefined;
  };
  const current = () => {
    const here = live();
    if (!here) throw new Error('not inside a transaction');
    return here;
  };
  const once = async <T>(fn: () => Promise<T>, options: TransactionOptions): Promise<T> => {
    const after: Array<() => void> = [];
    const builder =
      dialect === 'postgres'
        ? base.transaction().setIsolationLevel(options.readCommitted ? 'read committed' : 'serializable')
        : base.transaction();
    let scope: Ambient | undefined;
    let result: T;
    try {
      result = await builder.execute((trx) => {
        scope = { trx, before: [], after, open: true };
        return ambient.run(scope, async () => {
          const value = await fn();
          const here = current();
          // A hook may queue another (an audit write that links further events).
          while (here.before.length > 0) await here.before.shift()!();
          return value;
        });
      });
    } finally {
      if (scope) scope.open = false;
    }
    for (const f of after) f();
    return result;
  };
  return {
    get db(): Kdb {
      return live()?.trx ?? base;
    },
    async transaction<T>(fn: () => Promise<T>, options: TransactionOptions = {}): Promise<T> {
      if (live()) return fn();
      for (let attempt = 1; ; attempt++) {
        try {
          return await once(fn, options);
        } catch (error) {
          if (attempt >= SERIALIZATION_TRIES || !isSerializationFailure(error)) throw error;
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
        }
      }
    },
    inTransaction: () => live() !== undefined,
    beforeCommit(fn: () => Promise<void>) {
      current().before.push(fn);
    },
    afterCommit(fn: () => void) {
      const here = live();
      if (here) here.after.push(fn);
      else fn();
    },
  };
}

/** PostgreSQL's serialization_failure and deadlock_detected: the transaction may simply be run again. */
function isSerializationFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}

/** Opens the database at `where` and applies its pending migrations. */
export async function openStore(where: StoreLocation): Promise<Store> {
  return 'url' in where ? openPostgres(where.url) : openSqliteStore(openDatabase(where.file));
}

/**
 * Opens (creating if needed) airlock's SQLite database in WAL mode and applies every pending
 * migration from src/store/migrations/sqlite, in file-name order, each in its own transaction.
 * Pass ':memory:' for a private in-memory database.
 */
export function openDatabase(file: string): Db {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // Page cache for the audit table, which grows to hundreds of MB with appends spread over many
  // tasks' pages.
  db.pragma('cache_size = -65536');
  // Checkpoint the write-ahead log every ~10,000 pages instead of 1,000: audit bursts rewrite the
  // same pages, and fewer, larger checkpoints copy each of them once (bench/audit.ts).
  db.pragma('wal_autocheckpoint = 10000');
  migrate(db);
  return db;
}

/** Wraps an open SQLite connection as a Store. */
export function openSqliteStore(sqlite: Db): Store {
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const ambient = transactions(new Kysely<Schema>({ dialect: new SerialSqliteDialect(sqlite) }), 'sqlite');
  return {
    dialect: 'sqlite',
    get db() {
      return ambient.db;
    },
    transaction: ambient.transaction,
    inTransaction: ambient.inTransaction,
    beforeCommit: ambient.beforeCommit,
    afterCommit: ambient.afterCommit,
    sqlite,
    committed: null,
    async notify(channel, payload = '') {
      // Listeners hear of a change once it is committed, as PostgreSQL's NOTIFY does.
      ambient.afterCommit(() => events.emit(channel, payload));
    },
    async listen(channel, onMessage) {
      events.on(channel, onMessage);
      return async () => void events.off(channel, onMessage);
    },
    async close() {
      events.removeAllListeners();
      if (sqlite.open) sqlite.close();
    },
  };
}

/** Applies the SQLite migrations that have not run yet; returns their names. */
export function migrate(db: Db): string[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)');
  const done = new Set(
    db
      .prepare('SELECT name FROM schema_migrations')
      .all()
      .map((row) => (row as { name: string }).name),
  );
  const pending = migrationFiles('sqlite').filter((f) => !done.has(f));
  for (const name of pending) {
    const text = readFileSync(path.join(MIGRATIONS_DIR, 'sqlite', name), 'utf8');
    db.transaction(() => {
      db.exec(text);
      db.prepare('INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)').run(
        name,
        new Date().toISOString(),
      );
    })();
  }
  return pending;
}

function migrationFiles(dialect: Dialect): string[] {
  return readdirSync(path.join(MIGRATIONS_DIR, dialect))
    .filter((f) => f.endsWith('.sql'))
    .sort();
}

// bigint columns (counts, GitHub ids) read back as numbers, as SQLite's integers do; none comes
// near 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

async function openPostgres(url: string): Promise<Store> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client that loses its server (restart, failover) must not take the process with it:
  // the next query gets a fresh connection or a clear error.
  pool.on('error', () => {});
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migratePostgres(db);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  const listener = new PgListener(url);
  const ambient = transactions(db, 'postgres');
  // Apart from the main pool, so that transactions holding every connection of it never wait for
  // one here (its reads wait on nothing, so these connections are always given back).
  const sidePool = new pg.Pool({ connectionString: url, max: 2 });
  sidePool.on('error', () => {});
  const committed = new Kysely<Schema>({ dialect: new PostgresDialect({ pool: sidePool }) });
  return {
    dialect: 'postgres',
    get db() {
      return ambient.db;
    },
    transaction: ambient.transaction,
    inTransaction: ambient.inTransaction,
    beforeCommit: ambient.beforeCommit,
    afterCommit: ambient.afterCommit,
    sqlite: null,
    committed,
    async notify(channel, payload = '') {
      // Inside a transaction, PostgreSQL delivers it at commit (and not at all on rollback).
      await sql`SELECT pg_notify(${channel}, ${payload})`.execute(ambient.db);
    },
    listen: (channel, onMessage) => listener.listen(channel, onMessage),
    async close() {
      await listener.close();
      await committed.destroy();
      await db.destroy();
    },
  };
}

/**
 * Applies pending PostgreSQL migrations, all in one transaction under an advisory lock: replicas
 * that start at once apply each migration once, and the others wait and find them done.
 */
export async function migratePostgres(db: Kdb): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext('airlock.migrations'))`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`.execute(
      trx,
    );
    const done = new Set(
      (await trx.selectFrom('schema_migrations').select('name').execute()).map((r) => r.name),
    );
    const pending = migrationFiles('postgres').filter((f) => !done.has(f));
    for (const name of pending) {
      await sql.raw(readFileSync(path.join(MIGRATIONS_DIR, 'postgres', name), 'utf8')).execute(trx);
      await trx
        .insertInto('schema_migrations')
        .values({ name, applied_at: new Date().toISOString() })
        .execute();
    }
    return pending;
  });
}

/**
 * One connection that LISTENs for every channel this process cares about. When it drops, it
 * reconnects with back-off and listens again; listeners also poll, so a notification missed in
 * that gap delays work but loses none.
 */
class PgListener {
  readonly #url: string;
  readonly #handlers = new Map<string, Set<(payload: string) => void>>();
  #client: Promise<pg.Client> | null = null;
  #closed = false;
  #retryMs = 250;

  constructor(url: string) {
    this.#url = url;
  }

  async listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.#handlers.get(channel);
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
      const client = await this.#connected();
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    }
    set.add(onMessage);
    return async () => {
      set.delete(onMessage);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    const client = await this.#client?.catch(() => null);
    await client?.end().catch(() => {});
  }

  #connected(): Promise<pg.Client> {
    this.#client ??= this.#connect();
    return this.#client;
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.#url });
    client.on('notification', (message) => {
      for (const handler of this.#handlers.get(message.channel) ?? []) handler(message.payload ?? '');
    });
    client.on('error', () => this.#reconnect());
    client.on('end', () => this.#reconnect());
    await client.connect();
    for (const channel of this.#handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    this.#retryMs = 250;
    return client;
  }

  #reconnect(): void {
    if (this.#closed) return;
    this.#client = null;
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, 10_000);
    setTimeout(() => {
      if (this.#closed || this.#client) return;
      this.#connected().catch(() => this.#reconnect());
    }, delay).unref();
  }
}
