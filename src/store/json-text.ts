import { type RawBuilder, sql } from 'kysely';
import type { Dialect } from './database.ts';

/**
 * A top-level field of a JSON text column, as text (null when absent), in the SQL of either
 * database: SQLite's json_extract, PostgreSQL's ->> on the column cast to jsonb. For conditions and
 * groupings that must stay in the database (a page's refusals, the metrics' outcomes).
 */
export function jsonText(dialect: Dialect, column: string, key: string): RawBuilder<string | null> {
  if (!/^[a-z_]+$/i.test(key)) throw new Error(`not a plain JSON key: ${key}`);
  return dialect === 'postgres'
    ? sql<string | null>`(${sql.ref(column)}::jsonb ->> ${sql.lit(key)})`
    : sql<string | null>`json_extract(${sql.ref(column)}, ${sql.lit(`$.${key}`)})`;
}
