import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AirlockError } from '../errors.ts';
import { type Db, openDatabase } from '../store/database.ts';

/** The database file under a data folder, as an absolute path (so messages name it exactly). */
export function databaseFile(dataDir: string): string {
  return path.resolve(dataDir, 'airlock.sqlite');
}

/**
 * Opens the airlock database of an existing data folder for a command: `read` opens it read-only
 * (verify, export: a look must not change or create anything), `write` opens it for a command that
 * records something (purge). Neither creates a database where there is none: running a command in
 * the wrong folder says so instead of starting an empty one.
 */
export function openAirlockData(dataDir: string, mode: 'read' | 'write'): Db {
  const file = databaseFile(dataDir);
  if (!existsSync(file)) {
    throw new AirlockError('no_data', `there is no airlock data at ${file}`, {
      hint: 'AIRLOCK_DATA_DIR points at the data folder (default ./data in the current folder): run the command where airlock runs, or set AIRLOCK_DATA_DIR',
    });
  }
  if (mode === 'write') return openDatabase(file);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}
