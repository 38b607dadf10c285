import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store, type StoreLocation } from '../../src/store/database.ts';
import { liveTaskStream } from '../../src/web/live-stream.ts';
import { createTestDatabase, DIALECTS } from '../helpers/test-store.ts';

// A task's live page is served by one process while another (its worker) writes most of its
// events: the page must show every event once, in chain order, even when it hears of a later one
// first.
describe.each(DIALECTS)('a live task page fed by two writers on %s', (dialect) => {
  const stores: Store[] = [];
  let dir: string | undefined;
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fills a gap from the record before sending the event after it', async () => {
    let where: StoreLocation;
    if (dialect === 'postgres') where = { url: await createTestDatabase() };
    else {
      dir = await mkdtemp(path.join(tmpdir(), 'airlock-live-'));
      where = { file: path.join(dir, 'airlock.sqlite') };
    }
    const open = async () => {
      const store = await openStore(where);
      stores.push(store);
      return new AuditLog(store, systemClock, new SecretRedactor());
    };
    const page = await open();
    const worker = await open();
    const app = new Hono().get('/live', (c) =>
      liveTaskStream(c, {
        audit: page,
        taskId: 't1',
        afterSeq: 0,
        finished: false,
        stillAllowed: async () => true,
        recheckMs: 60_000,
        keepAliveMs: 60_000,
      }),
    );
    const response = await app.request('/live');
    const reader = response.body!.getReader();
    let text = '';
    const readUntil = async (marker: string) => {
      while (!text.includes(marker)) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    };
    page.append('t1', 'task.state', { state: 'running' });
    await readUntil('id: 1\n');
    // This process hears nothing of the worker's events (as if its notifications were late)...
    for (let i = 0; i < 5; i++) worker.append('t1', 'vm.exec', { argv: [`step-${i}`] });
    await worker.flush();
    // ...and then of its own next one, the seventh.
    page.append('t1', 'task.outcome', { state: 'succeeded' });
    await readUntil('event: end');
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });
});
