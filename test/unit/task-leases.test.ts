import { afterEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/database.ts';
import { TaskLeases } from '../../src/workers/task-leases.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { createTestDatabase, DIALECTS, openTestStore } from '../helpers/test-store.ts';

const LEASE_MS = 30_000;

/** Writes a task row as intake would, in the given state (queued by default). */
async function addTask(
  store: Store,
  clock: ManualClock,
  fields: { id: string; repo?: string; branch?: string; state?: string; owner?: string | null },
): Promise<void> {
  const at = clock.now().toISOString();
  await store.db
    .insertInto('tasks')
    .values({
      id: fields.id,
      installation_id: 1,
      repo_full_name: fields.repo ?? 'acme/widgets',
      repo_id: 1,
      issue_number: 1,
      pr_number: null,
      kind: 'issue',
      state: fields.state ?? 'queued',
      reason: null,
      branch: fields.branch ?? `airlock/issue-1-${fields.id}`,
      base_ref: 'main',
      actor_login: 'alice',
      actor_id: 1,
      trigger_event: 'issues.labeled',
      trigger_url: null,
      delivery_id: null,
      instruction: null,
      start_json: JSON.stringify({ from: 'ref', ref: 'main' }),
      parent_task_id: null,
      tracking_comment_id: null,
      check_run_id: null,
      head_sha: null,
      result_json: null,
      thread_json: null,
      created_at: at,
      updated_at: at,
      started_at: null,
      finished_at: null,
      lease_owner: fields.owner ?? null,
      lease_expires_at: fields.owner ? new Date(clock.now().getTime() + LEASE_MS).toISOString() : null,
    })
    .execute();
  clock.advance(1);
}

describe.each(DIALECTS)('task leases on %s', (dialect) => {
  let store: Store | null = null;
  afterEach(async () => {
    await store?.close();
    store = null;
  });
  const open = async () => {
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-12-01T10:00:00Z'));
    return { store, clock, leases: new TaskLeases(store, clock, { leaseMs: LEASE_MS }) };
  };

  it('claims queued tasks oldest first, up to the free slots, as starting and leased', async () => {
    const { store, clock, leases } = await open();
    for (const id of ['t1', 't2', 't3']) await addTask(store, clock, { id, repo: `acme/${id}` });
    const claimed = await leases.claim('w1', { free: 2, maxPerRepo: 5 });
    expect(claimed.map((t) => [t.id, t.state])).toEqual([
      ['t1', 'starting'],
      ['t2', 'starting'],
    ]);
    const row = await store.db
      .selectFrom('tasks')
      .selectAll()
      .where('id', '=', 't1')
      .executeTakeFirstOrThrow();
    expect(row.lease_owner).toBe('w1');
    expect(Date.parse(row.lease_expires_at!) - clock.now().getTime()).toBe(LEASE_MS);
    expect(await leases.claim('w2', { free: 0, maxPerRepo: 5 })).toEqual([]);
  });

  it('keeps the per-repository limit across workers and one task per branch at a time', async () => {
    const { store, clock, leases } = await open();
    await addTask(store, clock, { id: 'r1', repo: 'acme/a', state: 'running', owner: 'w9' });
    await addTask(store, clock, { id: 'q1', repo: 'acme/a' });
    await addTask(store, clock, { id: 'q2', repo: 'acme/a' });
    await addTask(store, clock, { id: 'b1', repo: 'acme/b', branch: 'airlock/shared' });
    await addTask(store, clock, { id: 'b2', repo: 'acme/b', branch: 'airlock/shared' });
    const first = await leases.claim('w1', { free: 10, maxPerRepo: 2 });
    // acme/a already runs r1: one more fits. acme/b's second task waits for the first on its branch.
    expect(first.map((t) => t.id).sort()).toEqual(['b1', 'q1']);
    expect((await leases.claim('w2', { free: 10, maxPerRepo: 2 })).map((t) => t.id)).toEqual([]);
  });

  it('gives every task to exactly one of many workers claiming at once', async () => {
    const { store, clock, leases } = await open();
    for (let i = 0; i < 60; i++)
      await addTask(store, clock, { id: `t${String(i).padStart(2, '0')}`, repo: `acme/r${i % 6}` });
    const workers = ['w1', 'w2', 'w3', 'w4'];
    const got = new Map<string, string>();
    const loop = async (worker: string) => {
      for (;;) {
        const claimed = await leases.claim(worker, { free: 3, maxPerRepo: 100 });
        if (claimed.length === 0) {
          const left = await store.db
            .selectFrom('tasks')
            .select('id')
            .where('state', '=', 'queued')
            .execute();
          if (left.length === 0) return;
          continue;
        }
        for (const task of claimed) {
          expect(got.has(task.id), `${task.id} claimed twice`).toBe(false);
          got.set(task.id, worker);
        }
      }
    };
    await Promise.all(workers.map(loop));
    expect(got.size).toBe(60);
    const owners = await store.db.selectFrom('tasks').select(['id', 'lease_owner']).execute();
    for (const row of owners) expect(row.lease_owner).toBe(got.get(row.id));
  });

  it('never lets workers claiming at once exceed a repository limit together', async () => {
    const { store, clock, leases } = await open();
    // More queued tasks than one claim looks at, so concurrent claims see different candidates.
    for (let i = 0; i < 200; i++) await addTask(store, clock, { id: `t${String(i).padStart(3, '0')}` });
    const claims = await Promise.all(
      ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'].map((w) => leases.claim(w, { free: 5, maxPerRepo: 2 })),
    );
    expect(claims.flat()).toHaveLength(2);
  });

  it('renews only the leases a worker still holds, and hands ended ones to exactly one taker', async () => {
    const { store, clock, leases } = await open();
    await addTask(store, clock, { id: 't1' });
    await addTask(store, clock, { id: 't2' });
    await leases.register({ id: 'w1', host: 'h1', pid: 1, capacity: 2 });
    await leases.claim('w1', { free: 2, maxPerRepo: 5 });
    clock.advance(LEASE_MS / 3);
    expect([...(await leases.renew('w1'))].sort()).toEqual(['t1', 't2']);
    // w1 stops renewing: nothing has expired until its lease runs out.
    clock.advance(LEASE_MS - 1);
    expect(await leases.takeExpired('cp')).toEqual([]);
    clock.advance(2);
    const [a, b] = await Promise.all([leases.takeExpired('cp1'), leases.takeExpired('cp2')]);
    expect([...a, ...b].map((t) => t.id).sort()).toEqual(['t1', 't2']);
    // The worker comes back: its heartbeat shows it holds nothing any more.
    expect(await leases.renew('w1')).toEqual(new Set());
  });

  it('releases a lease only for its holder', async () => {
    const { store, clock, leases } = await open();
    await addTask(store, clock, { id: 't1' });
    await leases.claim('w1', { free: 1, maxPerRepo: 5 });
    await store.db.updateTable('tasks').set({ state: 'succeeded' }).where('id', '=', 't1').execute();
    await leases.release('t1', 'w2');
    let row = await store.db.selectFrom('tasks').select('lease_owner').executeTakeFirstOrThrow();
    expect(row.lease_owner).toBe('w1');
    await leases.release('t1', 'w1');
    row = await store.db.selectFrom('tasks').select('lease_owner').executeTakeFirstOrThrow();
    expect(row.lease_owner).toBeNull();
  });

  it('hands a task its run left active to the next sweep instead of letting it go', async () => {
    const { store, clock, leases } = await open();
    await addTask(store, clock, { id: 't1' });
    await leases.claim('w1', { free: 1, maxPerRepo: 5 });
    // The run ended without writing the task's ending (the database failed it, say).
    await leases.release('t1', 'w1');
    const taken = await leases.takeExpired('sweeper');
    expect(taken.map((t) => [t.id, t.state])).toEqual([['t1', 'starting']]);
  });
});

describe('task leases on postgres, two workers', () => {
  it("does not count a repository's room before another worker's claim in it has committed", async () => {
    const url = await createTestDatabase();
    const [a, b] = [await openStore({ url }), await openStore({ url })];
    try {
      const clock = new ManualClock(Date.parse('2026-12-01T10:00:00Z'));
      // More than one claim looks at: worker 2's candidates are not the rows worker 1 holds.
      for (let i = 0; i < 70; i++) await addTask(a, clock, { id: `t${String(i).padStart(2, '0')}` });
      const [first, second] = [a, b].map((s) => new TaskLeases(s, clock, { leaseMs: LEASE_MS }));
      let holding!: () => void;
      const held = new Promise<void>((resolve) => {
        holding = resolve;
      });
      let letGo!: () => void;
      const released = new Promise<void>((resolve) => {
        letGo = resolve;
      });
      // Worker 1's claim is written but not yet committed (its transaction is held open here).
      const claiming = a.transaction(
        async () => {
          const got = await first!.claim('w1', { free: 2, maxPerRepo: 2 });
          holding();
          await released;
          return got;
        },
        { readCommitted: true },
      );
      await held;
      // Worker 2 must not see the repository as empty and take two more.
      const meanwhile = await second!.claim('w2', { free: 2, maxPerRepo: 2 }).finally(letGo);
      expect(meanwhile).toEqual([]);
      expect((await claiming).map((t) => t.id)).toEqual(['t00', 't01']);
      expect(await second!.claim('w2', { free: 2, maxPerRepo: 2 })).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
