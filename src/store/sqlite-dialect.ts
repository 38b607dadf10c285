import type Database from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  SqliteDialect,
  SqliteDriver,
} from 'kysely';

/**
 * Kysely's SQLite dialect over one better-sqlite3 connection, with what its own driver leaves
 * out: the connection is held by one user at a time (a transaction keeps it across its awaits, so
 * no other query runs inside it), and prepared statements are cached by their text.
 */
export class SerialSqliteDialect extends SqliteDialect {
  readonly #database: Database.Database;

  constructor(database: Database.Database) {
    super({ database });
    this.#database = database;
  }

  override createDriver(): Driver {
    return new SerialSqliteDriver(this.#database);
  }
}

const STATEMENT_CACHE = 500;

class SerialSqliteDriver extends SqliteDriver {
  readonly #connection: CachedConnection;
  #held = false;
  readonly #waiting: Array<() => void> = [];

  constructor(database: Database.Database) {
    super({ database });
    this.#connection = new CachedConnection(database);
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#held) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#held = true;
    return this.#connection;
  }

  /**
   * Takes SQLite's write lock at BEGIN: a transaction that reads and then writes (an audit chain's
   * head, then its next event) must not find, at its first write, that another process (the CLI's
   * purge) committed since its read, which SQLite answers with SQLITE_BUSY_SNAPSHOT rather than a
   * wait. In this process the one connection serializes transactions anyway.
   */
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  override async releaseConnection(): Promise<void> {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#held = false;
  }

  override async destroy(): Promise<void> {
    // The Store closes the database itself.
  }
}

class CachedConnection implements DatabaseConnection {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const statement = this.#statement(compiled.sql);
    const parameters = compiled.parameters as unknown[];
    if (statement.reader) return { rows: statement.all(parameters) as R[] };
    const { changes, lastInsertRowid } = statement.run(parameters);
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
  }

  // biome-ignore lint/correctness/useYield: airlock never streams from SQLite.
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on SQLite');
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement) {
      // Most recently used last: the first key is the one to evict.
      this.#statements.delete(sql);
    } else {
      statement = this.#db.prepare(sql);
      if (this.#statements.size >= STATEMENT_CACHE) {
        const oldest = this.#statements.keys().next().value;
        if (oldest !== undefined) this.#statements.delete(oldest);
      }
    }
    this.#statements.set(sql, statement);
    return statement;
  }
}
