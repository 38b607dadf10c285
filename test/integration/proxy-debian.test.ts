import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import type { DebianSource } from '../../src/proxy/debian-sources.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

// The Debian archive route of a build's proxy: read-only, per archive, audited; absent for tasks.

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let archive: Server;
let archiveUrl: string;
const seen: string[] = [];
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;

beforeAll(async () => {
  archive = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (req.url === '/debian/moved/Release') {
      res.writeHead(302, { location: 'http://elsewhere.example/debian/Release' }).end();
      return;
    }
    if (req.url === '/debian/dists/bookworm/Release') {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'last-modified': 'Thu, 01 Jan 2026 00:00:00 GMT',
        'set-cookie': 'a=b',
      });
      res.end('Suite: bookworm\n');
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => archive.listen(0, '127.0.0.1', resolve));
  archiveUrl = `http://127.0.0.1:${(archive.address() as AddressInfo).port}/debian`;
});

afterAll(async () => {
  archive.closeAllConnections();
  await new Promise<void>((resolve) => archive.close(() => resolve()));
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

async function start(debianArchives?: DebianSource[]): Promise<string> {
  audit = new RecordingAudit();
  proxy = await startTaskProxy({
    taskId: 'build-1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/build-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {},
    egressAllow: [],
    ...(debianArchives ? { debianArchives } : {}),
    budgetTokens: 1000,
    onBudgetExceeded: () => {},
    audit,
    log: memoryLogger().log,
  });
  return proxy.address;
}

const sources = (): DebianSource[] => [
  { uri: archiveUrl, suites: ['bookworm'], components: ['main'], trusted: false },
];

describe('the Debian archive route', () => {
  it('forwards reads to the archive, with only the headers apt needs, and audits each', async () => {
    const base = await start(sources());
    const answer = await fetch(`${base}/debian/0/dists/bookworm/Release`);
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe('Suite: bookworm\n');
    expect(answer.headers.get('last-modified')).toBe('Thu, 01 Jan 2026 00:00:00 GMT');
    expect(answer.headers.get('set-cookie')).toBeNull();
    const head = await fetch(`${base}/debian/0/dists/bookworm/Release`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(seen.slice(-2)).toEqual([
      'GET /debian/dists/bookworm/Release',
      'HEAD /debian/dists/bookworm/Release',
    ]);
    expect(audit.events.filter((e) => e.type === 'proxy.debian').map((e) => e.data)).toEqual([
      {
        method: 'GET',
        path: '/dists/bookworm/Release',
        archive: 0,
        decision: 'forwarded',
        status: 200,
        bytes_down: 16,
      },
      {
        method: 'HEAD',
        path: '/dists/bookworm/Release',
        archive: 0,
        decision: 'forwarded',
        status: 200,
        bytes_down: 0,
      },
    ]);
  });

  it('refuses writes, unknown archives, query strings and redirects, each with its reason', async () => {
    const base = await start(sources());
    const before = seen.length;
    const post = await fetch(`${base}/debian/0/dists/bookworm/Release`, { method: 'POST', body: 'x' });
    expect([post.status, await post.text()]).toEqual([
      405,
      'airlock: the Debian archive route is read-only; POST is not allowed\n',
    ]);
    const unknown = await fetch(`${base}/debian/1/dists/bookworm/Release`);
    expect(unknown.status).toBe(404);
    const query = await fetch(`${base}/debian/0/dists/bookworm/Release?x=1`);
    expect(query.status).toBe(400);
    expect(seen.length).toBe(before);
    const moved = await fetch(`${base}/debian/0/moved/Release`, { redirect: 'manual' });
    expect(moved.status).toBe(502);
    expect(await moved.text()).toContain('redirected to http://elsewhere.example/debian/Release');
    expect(
      audit.events
        .filter((e) => e.type === 'proxy.debian')
        .map((e) => [e.data.decision, e.data.status ?? null]),
    ).toEqual([
      ['refused', null],
      ['refused', null],
      ['refused', null],
      ['forwarded', 302],
    ]);
  });

  it('does not exist on a proxy started without archives (a task)', async () => {
    const base = await start();
    const answer = await fetch(`${base}/debian/0/dists/bookworm/Release`);
    expect(answer.status).toBe(403);
    expect(await answer.text()).toContain('is not served by the task proxy');
  });
});
