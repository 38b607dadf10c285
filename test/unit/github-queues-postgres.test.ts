import { setImmediate as turn } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { DELIVERIES_CHANNEL, DeliveryLog } from '../../src/github/delivery-log.ts';
import { GITHUB_JOBS_CHANNEL, GitHubJobQueue } from '../../src/github/github-jobs.ts';
import { recordIntents } from '../../src/github/webhook-dispatch.ts';
import { WebhookInbox } from '../../src/github/webhook-inbox.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { labelIntent } from '../helpers/label-intent.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { createTestDatabase } from '../helpers/test-store.ts';
import { idOnlyTracer } from '../helpers/test-tracer.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// Several control-plane processes on one PostgreSQL database: each process is a Store of its own
// (its own connection pool), all racing for the same rows.
const { log } = memoryLogger();
let stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  stores = [];
});

async function processes(n: number): Promise<Store[]> {
  const url = await createTestDatabase();
  for (let i = 0; i < n; i++) stores.push(await openStore({ url }));
  return stores;
}

describe('the GitHub queues shared by several processes on PostgreSQL', () => {
  it('stores a delivery once when two processes receive it at once, by id or by body', async () => {
    const [a, b] = await processes(2);
    const inboxes = [new WebhookInbox(a!, systemClock), new WebhookInbox(b!, systemClock)];
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const body = JSON.stringify({ action: 'labeled', issue: { number: i } });
        const replay = JSON.stringify({ action: 'labeled', issue: { number: 1000 + i } });
        return Promise.all([
          // The same delivery posted to both processes (GitHub's redelivery, a retried request).
          ...inboxes.map((inbox) => inbox.store(`same-${i}`, 'issues', body)),
          // The same signed body under two delivery ids (a replay), one to each process.
          ...inboxes.map((inbox, n) => inbox.store(`replay-${i}-${n}`, 'issues', replay)),
        ]);
      }),
    );
    for (const [sameA, sameB, replayA, replayB] of results) {
      expect([sameA, sameB].sort()).toEqual(['duplicate', 'stored']);
      expect([replayA, replayB].sort()).toEqual(['duplicate', 'stored']);
    }
    expect(await inboxes[0]!.waiting(1000)).toHaveLength(200);
  });

  it('dispatches each stored delivery once with four dispatchers at once', async () => {
    const all = await processes(4);
    const inbox = new WebhookInbox(all[0]!, systemClock);
    for (let i = 0; i < 200; i++) {
      const payload = examplePayload('issues', 'labeled', {
        repo: { id: 7, fullName: `acme/repo-${i % 10}` },
        sender: { login: 'dev', id: 2 },
        installationId: 1,
      });
      payload.issue.number = i + 1;
      await inbox.store(`d-${i}`, 'issues', JSON.stringify(payload));
    }
    const handled = await Promise.all(
      all.map(async (store) => {
        const deps = {
          store,
          inbox: new WebhookInbox(store, systemClock),
          deliveries: new DeliveryLog(store, systemClock),
          appSlug: 'airlock',
          log,
          tracer: idOnlyTracer(),
        };
        let n = 0;
        for (let step = await recordIntents(deps); step > 0; step = await recordIntents(deps)) n += step;
        return n;
      }),
    );
    expect(handled.reduce((a, b) => a + b)).toBe(200);
    expect(await inbox.waiting(1000)).toEqual([]);
    const recorded = await all[0]!.db.selectFrom('deliveries').select('delivery_id').execute();
    expect(new Set(recorded.map((r) => r.delivery_id)).size).toBe(200);
  });

  it('gives each delivery to one claimer, and one delivery of a repository at a time', async () => {
    const all = await processes(4);
    const first = new DeliveryLog(all[0]!, systemClock);
    for (let i = 0; i < 200; i++) await first.record(labelIntent(`d-${i}`, `acme/repo-${i % 20}`));
    const claimed: string[] = [];
    const inIntake = new Map<string, string>();
    const overlaps: string[] = [];
    await Promise.all(
      all.map(async (store) => {
        const log = new DeliveryLog(store, systemClock);
        for (let d = await log.claim(); d; d = await log.claim()) {
          const repo = d.intent.origin.repo.fullName;
          if (inIntake.has(repo)) overlaps.push(`${inIntake.get(repo)} and ${d.deliveryId}`);
          inIntake.set(repo, d.deliveryId);
          claimed.push(d.deliveryId);
          await turn();
          inIntake.delete(repo);
          await log.finish(d, 'done', 'taken in');
        }
      }),
    );
    expect(overlaps).toEqual([]);
    expect(claimed).toHaveLength(200);
    expect(new Set(claimed).size).toBe(200);
    expect(await first.pending()).toEqual([]);
  });

  it('runs each GitHub job once with four job loops at once', async () => {
    const all = await processes(4);
    const first = new GitHubJobQueue(all[0]!, systemClock);
    for (let i = 0; i < 200; i++) {
      await first.enqueue({
        kind: 'comment',
        installationId: 1,
        repo: 'a/b',
        issueNumber: 1,
        body: `job ${i}`,
      });
    }
    const ran: string[] = [];
    await Promise.all(
      all.map(async (store) => {
        const jobs = new GitHubJobQueue(store, systemClock);
        const execute = async (job: { kind: string; body?: string }) => {
          ran.push(job.body ?? job.kind);
          await turn();
        };
        while ((await jobs.drain(execute, log)) > 0) {}
      }),
    );
    expect(ran).toHaveLength(200);
    expect(new Set(ran).size).toBe(200);
    expect(await first.pendingCount()).toBe(0);
    const attempts = await all[0]!.db.selectFrom('github_jobs').select('attempts').distinct().execute();
    expect(attempts).toEqual([{ attempts: 1 }]);
  });

  it("wakes another process's loops: a job queued or a delivery recorded is heard there once committed", async () => {
    const [a, b] = await processes(2);
    let committing = false;
    const heard: Array<{ channel: string; beforeCommit: boolean }> = [];
    const hear = async (channel: string) => {
      let resolve: () => void = () => {};
      const once = new Promise<void>((r) => {
        resolve = r;
      });
      await b!.listen(channel, () => {
        heard.push({ channel, beforeCommit: !committing });
        resolve();
      });
      // In an object: an async function returning a promise would wait for it.
      return { once };
    };
    const jobHeard = (await hear(GITHUB_JOBS_CHANNEL)).once;
    const deliveryHeard = (await hear(DELIVERIES_CHANNEL)).once;
    await a!.transaction(async () => {
      await new GitHubJobQueue(a!, systemClock).enqueue({ kind: 'tracking', taskId: 't1' });
      await new DeliveryLog(a!, systemClock).record(labelIntent('d-1'));
      a!.beforeCommit(async () => {
        committing = true;
      });
    });
    await Promise.all([jobHeard, deliveryHeard]);
    expect(heard.sort((x, y) => x.channel.localeCompare(y.channel))).toEqual([
      { channel: DELIVERIES_CHANNEL, beforeCommit: false },
      { channel: GITHUB_JOBS_CHANNEL, beforeCommit: false },
    ]);
  });
});
