import { sql } from 'kysely';
import type { Store } from '../../src/store/database.ts';

/**
 * Runs a statement the append-only triggers refuse, as someone with write access to the database
 * would: the triggers are dropped first.
 */
export async function tamper(store: Store, statement: string): Promise<void> {
  const drops =
    store.dialect === 'sqlite'
      ? [
          'DROP TRIGGER IF EXISTS audit_events_append_only_update',
          'DROP TRIGGER IF EXISTS audit_events_append_only_delete',
        ]
      : ['DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events'];
  for (const drop of drops) await sql.raw(drop).execute(store.db);
  await sql.raw(statement).execute(store.db);
}

/** How many audit events are committed. */
export async function storedEvents(store: Store): Promise<number> {
  const row = await store.db
    .selectFrom('audit_events')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
