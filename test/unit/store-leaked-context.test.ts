import { describe, expect, it } from 'vitest';
import { DIALECTS, testStores } from '../helpers/test-store.ts';

describe.each(DIALECTS)('work started inside a transaction and running after it, on %s', (dialect) => {
  const open = testStores(dialect);

  it('sees no transaction once that one has ended: it queries the database and opens its own', async () => {
    const s = await open();
    const job = (kind: string) => ({
      kind,
      payload_json: '{}',
      status: 'pending' as const,
      not_before: 'a',
      created_at: 'b',
    });
    let release: () => void = () => {};
    const later = new Promise<void>((resolve) => {
      release = resolve;
    });
    let detached: Promise<{ inside: boolean; own: boolean }> | undefined;
    await s.transaction(async () => {
      await s.db.insertInto('github_jobs').values(job('in the transaction')).execute();
      // A loop woken here keeps this context (AsyncLocalStorage) after the transaction commits.
      detached = (async () => {
        await later;
        const inside = s.inTransaction();
        await s.db.insertInto('github_jobs').values(job('after it')).execute();
        const own = await s.transaction(async () => {
          await s.db.insertInto('github_jobs').values(job('in a transaction of its own')).execute();
          return s.inTransaction();
        });
        return { inside, own };
      })();
    });
    release();
    expect(await detached).toEqual({ inside: false, own: true });
    const kinds = await s.db.selectFrom('github_jobs').select('kind').orderBy('id').execute();
    expect(kinds.map((k) => k.kind)).toEqual([
      'in the transaction',
      'after it',
      'in a transaction of its own',
    ]);
  });
});
