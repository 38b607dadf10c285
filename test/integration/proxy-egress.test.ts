import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer, connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { runProcess } from '../../src/process/run-process.ts';
import { type AddressAllowed, isPublicAddress } from '../../src/proxy/address-policy.ts';
import type { LookupAll } from '../../src/proxy/egress-policy.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

const DNS: Record<string, string[]> = {
  'registry.test': ['93.184.216.34'],
  'loopback.test': ['127.0.0.1'],
  'private.test': ['10.1.2.3'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['93.184.216.34', '192.168.1.5'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'tls.test': ['127.0.0.1'],
  'web.test': ['127.0.0.1'],
};
const lookup: LookupAll = async (host) => {
  const addresses = DNS[host];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

let certDir: string;
let tlsServer: TlsServer;
let tlsPort: number;
let webServer: Server;
let webPort: number;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;

beforeAll(async () => {
  certDir = await mkdtemp(path.join(tmpdir(), 'airlock-egress-cert-'));
  await runProcess(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=tls.test',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
    ],
    { cwd: certDir, timeoutMs: 30_000 },
  );
  tlsServer = createTlsServer(
    {
      key: await readFile(path.join(certDir, 'key.pem')),
      cert: await readFile(path.join(certDir, 'cert.pem')),
    },
    (socket) => socket.end(`hello ${socket.servername}\n`),
  );
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  tlsPort = (tlsServer.address() as AddressInfo).port;
  webServer = createHttpServer((req, res) => res.end(`web ${req.headers.host} ${req.url}`));
  await new Promise<void>((resolve) => webServer.listen(0, '127.0.0.1', resolve));
  webPort = (webServer.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
  webServer.closeAllConnections();
  await new Promise<void>((resolve) => webServer.close(() => resolve()));
  await rm(certDir, { recursive: true, force: true });
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

async function start(addressAllowed?: AddressAllowed): Promise<number> {
  audit = new RecordingAudit();
  const { log } = memoryLogger();
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {},
    egressAllow: [
      'registry.test',
      '*.allowed.test',
      ...Object.keys(DNS).filter((h) => h !== 'registry.test'),
    ],
    egressPorts: [443, tlsPort, webPort],
    budgetTokens: 1000,
    onBudgetExceeded: () => {},
    lookup,
    ...(addressAllowed ? { addressAllowed } : {}),
    audit,
    log,
  });
  return Number(new URL(proxy.address).port);
}

/** Opens a CONNECT tunnel; resolves with the proxy's status line and the raw socket. */
function openTunnel(port: number, target: string): Promise<{ status: string; text: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
    );
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (!text.startsWith('HTTP/1.1 200')) {
        socket.on('data', (more: Buffer) => {
          text += more.toString('latin1');
        });
        socket.on('close', () => resolve({ status: text.split('\r\n')[0]!, text, socket }));
      } else resolve({ status: text.split('\r\n')[0]!, text, socket });
    };
    socket.on('data', onData);
    socket.on('error', reject);
  });
}

/** Speaks TLS inside a tunnel with the given SNI; resolves with what the server said, or the error. */
function tlsThrough(socket: Socket, servername: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const tls = tlsConnect({
      socket,
      rejectUnauthorized: false,
      ...(servername !== undefined ? { servername } : {}),
    });
    let text = '';
    tls.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    tls.on('end', () => resolve(text));
    tls.on('error', (error) => resolve(`error: ${error.message}`));
  });
}

const egressEvents = () => audit.events.filter((e) => e.type === 'proxy.egress').map((e) => e.data);

describe('egress through the task proxy', () => {
  it('refuses CONNECT to a host that is not on the allowlist, and to an address', async () => {
    const port = await start();
    for (const target of ['elsewhere.test:443', 'sub.registry.test:443', '127.0.0.1:443', '[::1]:443']) {
      const { status, text } = await openTunnel(port, target);
      expect(status, target).toBe('HTTP/1.1 403 Forbidden');
      expect(text).toContain('airlock: egress refused');
    }
    expect(egressEvents()).toHaveLength(4);
    expect(egressEvents().every((e) => e.decision === 'refused')).toBe(true);
  });

  it.each([
    ['loopback.test', '127.0.0.1'],
    ['private.test', '10.1.2.3'],
    ['metadata.test', '169.254.169.254'],
    ['mixed.test', '192.168.1.5'],
    ['mapped.test', '::ffff:127.0.0.1'],
  ])('refuses an allowed name that resolves to a non-public address (%s → %s)', async (host, address) => {
    const port = await start();
    const { status, text } = await openTunnel(port, `${host}:443`);
    expect(status).toBe('HTTP/1.1 403 Forbidden');
    expect(text).toContain(`resolves to ${address}, which is not a public address`);
    expect(egressEvents()).toEqual([
      expect.objectContaining({
        method: 'CONNECT',
        host,
        port: 443,
        decision: 'refused',
        addresses: DNS[host],
      }),
    ]);
  });

  it('tunnels TLS to an allowed host end to end, counting bytes both ways', async () => {
    const port = await start((address) => address === '127.0.0.1' || isPublicAddress(address));
    const { status, socket } = await openTunnel(port, `tls.test:${tlsPort}`);
    expect(status).toBe('HTTP/1.1 200 Connection Established');
    expect(await tlsThrough(socket, 'tls.test')).toBe('hello tls.test\n');
    await proxy!.close();
    const [event] = egressEvents();
    expect(event).toMatchObject({
      method: 'CONNECT',
      host: 'tls.test',
      port: tlsPort,
      decision: 'allowed',
      addresses: ['127.0.0.1'],
    });
    expect(event!.bytes_up).toBeGreaterThan(200);
    expect(event!.bytes_down).toBeGreaterThan(500);
  });

  it('refuses a tunnel whose TLS server name is not the CONNECT host, or has none', async () => {
    const port = await start((address) => address === '127.0.0.1' || isPublicAddress(address));
    const mismatch = await openTunnel(port, `tls.test:${tlsPort}`);
    expect(await tlsThrough(mismatch.socket, 'registry.test')).toMatch(/^error:|^$/);
    const none = await openTunnel(port, `tls.test:${tlsPort}`);
    expect(await tlsThrough(none.socket, '')).toMatch(/^error:|^$/);
    const plain = await openTunnel(port, `tls.test:${tlsPort}`);
    plain.socket.end('GET / HTTP/1.1\r\n\r\n');
    await new Promise((resolve) => plain.socket.on('close', resolve));
    const reasons = egressEvents().map((e) => [e.decision, e.reason]);
    expect(reasons).toEqual([
      ['refused', 'TLS server name registry.test does not match tls.test'],
      ['refused', 'TLS ClientHello has no server name'],
      ['refused', 'not a TLS handshake'],
    ]);
  });

  it('forwards plain HTTP to an allowed host and refuses others', async () => {
    const port = await start((address) => address === '127.0.0.1' || isPublicAddress(address));
    const get = (url: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () =>
          socket.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nConnection: close\r\n\r\n`),
        );
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        socket.on('close', () =>
          resolve({ status: Number(text.split(' ')[1]), body: text.split('\r\n\r\n')[1] ?? '' }),
        );
        socket.on('error', reject);
      });
    const ok = await get(`http://web.test:${webPort}/simple/pkg?x=1`);
    expect(ok.status).toBe(200);
    expect(ok.body).toContain(`web web.test:${webPort} /simple/pkg?x=1`);
    expect((await get(`http://elsewhere.test:${webPort}/`)).status).toBe(403);
    expect((await get(`http://loopback.test:${webPort}/`)).status).toBe(200);
    expect(egressEvents().map((e) => [e.host, e.decision])).toEqual([
      ['web.test', 'allowed'],
      ['elsewhere.test', 'refused'],
      ['loopback.test', 'allowed'],
    ]);
    expect(egressEvents()[0]!.bytes_down).toBeGreaterThan(0);
  });

  it('refuses CONNECT to address literals of every form, even where the address policy would allow them', async () => {
    // An address policy that allows everything: the refusal must come from the literal itself.
    const port = await start(() => true);
    const targets = [
      '127.0.0.1:443',
      '[::1]:443',
      '[::ffff:127.0.0.1]:443',
      '[::ffff:169.254.169.254]:443',
      '[::ffff:a9fe:a9fe]:443',
      '[0:0:0:0:0:ffff:7f00:1]:443',
      `127.0.0.1:${tlsPort}`,
    ];
    for (const target of targets) {
      const { status, text } = await openTunnel(port, target);
      expect(status, target).toBe('HTTP/1.1 403 Forbidden');
      expect(text, target).toContain('addresses cannot be reached directly');
    }
    expect(egressEvents().map((e) => [e.decision, e.reason])).toEqual(
      targets.map(() => ['refused', 'addresses cannot be reached directly; use an allowlisted host name']),
    );
  });

  it('refuses plain HTTP forwarded to address literals, and the upstream sees nothing', async () => {
    let hits = 0;
    webServer.on('request', () => {
      hits += 1;
    });
    const port = await start(() => true);
    const get = (target: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () =>
          socket.write(`GET ${target} HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n`),
        );
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        socket.on('close', () =>
          resolve({ status: Number(text.split(' ')[1]), body: text.split('\r\n\r\n')[1] ?? '' }),
        );
        socket.on('error', reject);
      });
    const targets = [
      `http://127.0.0.1:${webPort}/`,
      `http://[::1]:${webPort}/`,
      `http://[::ffff:127.0.0.1]:${webPort}/`,
      'http://[::ffff:169.254.169.254]/latest/meta-data/',
      'http://169.254.169.254/latest/meta-data/',
      `http://2130706433:${webPort}/`,
      `http://0x7f.1:${webPort}/`,
      `http://127.1:${webPort}/`,
    ];
    for (const target of targets) {
      const { status, body } = await get(target);
      expect(status, target).toBe(403);
      expect(body, target).toContain('addresses cannot be reached directly');
    }
    expect(hits).toBe(0);
    expect(egressEvents()).toHaveLength(targets.length);
    expect(egressEvents().every((e) => e.decision === 'refused')).toBe(true);
  });
});
