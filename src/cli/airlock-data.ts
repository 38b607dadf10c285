import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { AppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';
import { openDatabase, openSqliteStore, openStore, type Store } from '../store/database.ts';

/** Where a command finds airlock's data: DATABASE_URL's PostgreSQL database, or the data folder's SQLite file. */
export type AirlockData = Pick<AppConfig, 'dataDir' | 'databaseUrl'>;

/** The database file under a data folder, as an absolute path (so messages name it exactly). */
export function databaseFile(dataDir: string): string {
  return path.resolve(dataDir, 'airlock.sqlite');
}

/** The database a command reads, as its messages name it (a URL without its password). */
export function databaseName(where: AirlockData): string {
  if (!where.databaseUrl) return databaseFile(where.dataDir);
  const url = new URL(where.databaseUrl);
  if (url.password) url.password = '***';
  return url.toString();
}

/**
 * Opens airlock's database for a command: `read` opens an existing data folder's SQLite file
 * read-only (verify, export: a look must not change or create anything), `write` opens it for a
 * command that records something (purge). Neither creates a database where there is none: running
 * a command in the wrong folder says so instead of starting an empty one. With DATABASE_URL the
 * command works on that PostgreSQL database, as the processes sharing it do.
 */
export async function openAirlockData(where: AirlockData, mode: 'read' | 'write'): Promise<Store> {
  if (where.databaseUrl) {
    try {
      return await openStore({ url: where.databaseUrl });
    } catch (error) {
      throw new AirlockError('no_data', `the database at ${databaseName(where)} cannot be opened`, {
        hint: 'check DATABASE_URL and that PostgreSQL is reachable from here',
        cause: error,
      });
    }
  }
  const file = databaseFile(where.dataDir);
  if (!existsSync(file)) {
    throw new AirlockError('no_data', `there is no airlock data at ${file}`, {
      hint: 'AIRLOCK_DATA_DIR points at the data folder (default ./data in the current folder): run the command where airlock runs, or set AIRLOCK_DATA_DIR',
    });
  }
  if (mode === 'write') return openSqliteStore(openDatabase(file));
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return openSqliteStore(db);
}
