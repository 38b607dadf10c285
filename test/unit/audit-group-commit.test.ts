import { setImmediate as nextTurn } from 'node:timers/promises';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AuditEvent, AuditLog } from '../../src/audit/audit-log.ts';
import { lockChains } from '../../src/audit/chain-writer.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { storedEvents } from '../helpers/audit-tamper.ts';
import { createTestDatabase, DIALECTS, openTestStore } from '../helpers/test-store.ts';
import { waitFor } from '../helpers/wait-for.ts';

describe.each(DIALECTS)('group commit on %s', (dialect) => {
  let store: Store;
  beforeEach(async () => {
    store = await openTestStore(dialect);
  });
  afterEach(async () => {
    await store.close();
  });
  const stored = () => storedEvents(store);
  /** Events committed on SQLite's one connection, without a turn of the event loop. */
  const storedNow = () =>
    (store.sqlite!.prepare('SELECT count(*) AS n FROM audit_events').get() as { n: number }).n;

  it('commits a turn’s events together at the end of the turn, then tells listeners', async () => {
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    const heard: AuditEvent[] = [];
    audit.subscribe((e) => heard.push(e));
    for (let i = 0; i < 10; i++) audit.append(`t${i % 2}`, 'vm.exec', { argv: ['true', String(i)] });
    if (dialect === 'sqlite') expect(storedNow()).toBe(0);
    expect(heard).toEqual([]);
    // SQLite commits within the next turn; PostgreSQL's commit takes round trips.
    if (dialect === 'sqlite') await nextTurn();
    else await waitFor(() => heard.length === 10, 10_000, 'the group commit');
    expect(await stored()).toBe(10);
    expect(heard.map((e) => [e.taskId, e.seq])).toEqual(
      Array.from({ length: 10 }, (_, i) => [`t${i % 2}`, Math.floor(i / 2) + 1]),
    );
    expect(await audit.headHash('t0')).toBe(heard[8]!.hash);
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: 10 });
  });

  it('commits early when maxEvents are waiting, and when a reader asks', async () => {
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 4 } });
    for (let i = 0; i < 4; i++) audit.append('t', 'step', { i });
    // On SQLite, a query waits behind the commit the fourth append started (within this turn).
    if (dialect === 'sqlite') expect(await stored()).toBe(4);
    audit.append('t', 'step', { i: 4 });
    audit.append('t', 'step', { i: 5 });
    expect((await audit.events('t')).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await stored()).toBe(6);
  });

  it('writes inside a caller’s transaction, so it commits or rolls back with it', async () => {
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    await store.transaction(async () => audit.append('t', 'ci.verdict', { verdict: 'passed' }));
    expect(await stored()).toBe(1);
  });

  it('links again when another process appended to the same chain meanwhile', async () => {
    const server = new AuditLog(store, systemClock, new SecretRedactor(), {
      groupCommit: { maxEvents: 100 },
    });
    server.append('t', 'task.created', {});
    await server.flush();
    const cli = new AuditLog(store, systemClock, new SecretRedactor());
    cli.append('t', 'audit.purged', { purged: [] });
    await cli.flush();
    server.append('t', 'ci.verdict', { verdict: 'passed' });
    server.append('t', 'ci.verdict', { verdict: 'failed' });
    expect((await server.events('t')).map((e) => [e.seq, e.type])).toEqual([
      [1, 'task.created'],
      [2, 'audit.purged'],
      [3, 'ci.verdict'],
      [4, 'ci.verdict'],
    ]);
    expect((await verifyAuditChains(store, 't')).ok).toBe(true);
  });

  it('a failed grouped commit is reported and thrown at the next append', async () => {
    const errors: unknown[] = [];
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), {
      groupCommit: { maxEvents: 100 },
      onError: (e) => errors.push(e),
    });
    if (dialect === 'sqlite') {
      await sql`CREATE TRIGGER refuse BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk is full'); END`.execute(
        store.db,
      );
    } else {
      await sql`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'disk is full'; END $$`.execute(store.db);
      await sql`CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse()`.execute(
        store.db,
      );
    }
    audit.append('t', 'step', {});
    if (dialect === 'sqlite') await nextTurn();
    else await waitFor(() => errors.length > 0, 10_000, 'the failed commit');
    expect(String(errors[0])).toContain('disk is full');
    expect(() => audit.append('t', 'step', {})).toThrow(/an earlier audit write failed/);
    await sql`DROP TRIGGER refuse${sql.raw(dialect === 'postgres' ? ' ON audit_events' : '')}`.execute(
      store.db,
    );
    audit.append('t', 'step', { after: true });
    expect((await audit.events('t')).map((e) => e.seq)).toEqual([1]);
    expect((await verifyAuditChains(store)).ok).toBe(true);
  });

  it('gives up once, not again and again, when the database is gone before a commit can begin', async () => {
    // A worker cut off from its database: a commit fails before it holds a connection, a turn of
    // the event loop later (as a refused connection does), so this test sees each attempt go by.
    const gone = await openTestStore(dialect);
    await gone.close();
    const cutOff = new Proxy(gone, {
      get: (target, key) =>
        key === 'transaction'
          ? async (...args: Parameters<Store['transaction']>) => {
              await nextTurn();
              return target.transaction(...args);
            }
          : Reflect.get(target, key),
    });
    const errors: unknown[] = [];
    const audit = new AuditLog(cutOff, systemClock, new SecretRedactor(), {
      groupCommit: { maxEvents: 100 },
      onError: (e) => errors.push(e),
    });
    audit.append('t', 'step', {});
    audit.append('t', 'step', {});
    const spinning = waitFor(() => errors.length > 100, 10_000, 'the failed commit to be tried again');
    await Promise.race([
      audit.flush(),
      spinning.then(() => {
        throw new Error(`the group commit was tried ${errors.length} times for two events`);
      }),
    ]);
    expect(errors).toHaveLength(1);
    expect(() => audit.append('t', 'step', {})).toThrow(/an earlier audit write failed/);
  });

  it('never commits waiting events inside a caller’s transaction, so its rollback loses none of them', async () => {
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    audit.append('t', 'step.1', {});
    audit.append('t', 'step.2', {});
    await expect(
      store.transaction(async () => {
        audit.append('t', 'step.rolled-back', {});
        audit.appendMany([{ taskId: 'u', type: 'step.rolled-back', data: {} }]);
        throw new Error('the caller gives up');
      }),
    ).rejects.toThrow('the caller gives up');
    audit.append('t', 'step.3', {});
    await store.transaction(async () => audit.append('t', 'step.4', {}));
    await nextTurn();
    expect((await audit.events('t')).map((e) => `${e.seq} ${e.type}`)).toEqual([
      '1 step.1',
      '2 step.2',
      '3 step.3',
      '4 step.4',
    ]);
    expect(await audit.events('u')).toEqual([]);
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: 4 });
  });

  it('loses no waiting event when a transaction wrote it ahead of its own and then rolled back', async () => {
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    const heard: string[] = [];
    audit.subscribe((e) => heard.push(`${e.seq} ${e.type}`));
    audit.append('t', 'step.1', {});
    await expect(
      store.transaction(async () => {
        audit.append('t', 'step.rolled-back', {});
        // Runs after the audit write: the transaction rolls back with both events written in it.
        store.beforeCommit(async () => {
          throw new Error('a later write fails');
        });
      }),
    ).rejects.toThrow('a later write fails');
    audit.append('t', 'step.2', {});
    await store.transaction(async () => audit.append('t', 'step.3', {}));
    await audit.flush();
    expect((await audit.events('t')).map((e) => `${e.seq} ${e.type}`)).toEqual([
      '1 step.1',
      '2 step.2',
      '3 step.3',
    ]);
    expect(heard).toEqual(['1 step.1', '2 step.2', '3 step.3']);
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: 3 });
  });
});

// On PostgreSQL the group commit runs beside callers' transactions, and either may take a waiting
// event: here in the order that once wrote it twice.
describe('group commit beside a caller’s transaction on postgres', () => {
  const stores: Store[] = [];
  const releases: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const release of releases.splice(0)) await release();
    for (const s of stores.splice(0)) await s.close();
  });

  /**
   * Holds a task's chain lock in a transaction of `other` (as another process writing that chain
   * would) until the returned release is called; also returns how many transactions wait for it.
   */
  async function holdChain(other: Store, taskId: string) {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held!: (key: { classid: number; objid: number }) => void;
    const lock = new Promise<{ classid: number; objid: number }>((resolve) => {
      held = resolve;
    });
    const ended = other.transaction(
      async () => {
        await lockChains(other, [taskId]);
        const { rows } = await sql<{ classid: number; objid: number }>`SELECT classid, objid FROM pg_locks
          WHERE locktype = 'advisory' AND pid = pg_backend_pid()`.execute(other.db);
        held(rows[0]!);
        await released;
      },
      { readCommitted: true },
    );
    const key = await lock;
    const end = async () => {
      release();
      await ended;
    };
    releases.push(end);
    const waiting = async () => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND classid = ${key.classid} AND objid = ${key.objid}`.execute(
        other.db,
      );
      return rows[0]!.n;
    };
    return { end, waiting };
  }

  it('writes a waiting event once when the group commit takes it after a caller’s transaction did, and locks its chain first', async () => {
    const url = await createTestDatabase();
    const store = await openStore({ url });
    stores.push(store);
    const other = await openStore({ url });
    stores.push(other);
    const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    const heard: string[] = [];
    audit.subscribe((e) => heard.push(`${e.taskId} ${e.seq} ${e.type}`));
    const [b, a, t] = [await holdChain(other, 'b'), await holdChain(other, 'a'), await holdChain(other, 't')];

    // A group commit writing task b waits for b's chain: what is appended next waits for the next one.
    audit.append('b', 'step', {});
    await waitFor(async () => (await b.waiting()) === 1, 10_000, 'the group commit to wait for chain b');
    audit.append('t', 'step.1', {});
    // A caller's transaction writes to a and t: it takes step.1 ahead of its own step.2, then waits
    // for a's chain (the locks are taken in task order).
    const caller = store.transaction(async () => {
      audit.append('a', 'step', {});
      audit.append('t', 'step.2', {});
    });
    await waitFor(async () => (await a.waiting()) === 1, 10_000, 'the caller to wait for chain a');
    // The group commit ends; the next one takes step.1 too, and waits for t's chain.
    await b.end();
    await waitFor(async () => (await t.waiting()) === 1, 10_000, 'the next group commit to wait for chain t');
    // It gets t's chain first and commits step.1; then the caller gets a's and t's.
    await t.end();
    await waitFor(() => heard.includes('t 1 step.1'), 10_000, 'the group commit of step.1');
    await a.end();
    await caller;

    expect((await audit.events('t')).map((e) => `${e.seq} ${e.type}`)).toEqual(['1 step.1', '2 step.2']);
    expect(heard).toEqual(['b 1 step', 't 1 step.1', 'a 1 step', 't 2 step.2']);
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: 4 });
  });
});
