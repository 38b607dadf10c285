import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { runProcess } from '../../src/process/run-process.ts';
import { type DestinationSecret, headerSecret } from '../../src/proxy/destination-secret.ts';
import { createEgressCa, type EgressCa } from '../../src/proxy/egress-ca.ts';
import type { LookupAll } from '../../src/proxy/egress-policy.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { type PrivateRegistry, startPrivateRegistry } from '../helpers/private-registry.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Item 6 of the environments issue: a credential bound to one destination is added by the proxy to
// requests to that host only, and the client (standing in for the guest) never sees it: not in
// headers, bodies, its own files, or the audit record. Real clients: curl and npm.

const TOKEN = `npm_private_${randomBytes(18).toString('hex')}`;
const REGISTRY_HOST = 'registry.private.test';

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let work: string;
let registry: PrivateRegistry;
let other: PrivateRegistry;
let ca: EgressCa;
let caFile: string;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;
let logLines: string[];

const lookup: LookupAll = async (host) => {
  if (host === REGISTRY_HOST || host === 'other.private.test') return [{ address: '127.0.0.1', family: 4 }];
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
};

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'airlock-secrets-'));
  registry = await startPrivateRegistry({ host: REGISTRY_HOST, expectedAuthorization: `Bearer ${TOKEN}` });
  other = await startPrivateRegistry({ host: 'other.private.test', expectedAuthorization: 'none' });
  ca = await createEgressCa({ dir: path.join(work, 'egress-ca'), hosts: [REGISTRY_HOST], label: 'test' });
  caFile = path.join(work, 'egress-ca.crt');
  await writeFile(caFile, ca.certPem);
}, 60_000);

afterAll(async () => {
  await registry?.close();
  await other?.close();
  await rm(work, { recursive: true, force: true });
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

function secret(): DestinationSecret {
  return headerSecret({
    name: 'npm-private',
    host: REGISTRY_HOST,
    port: registry.port,
    header: 'authorization',
    scheme: 'Bearer',
    value: TOKEN,
    upstreamCa: registry.caPem,
  });
}

async function start(withSecret = true): Promise<string> {
  audit = new RecordingAudit();
  const logger = memoryLogger();
  logLines = logger.lines;
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {},
    egressAllow: withSecret ? ['other.private.test'] : [REGISTRY_HOST, 'other.private.test'],
    // The registry's port is open through its secret alone (the control test allows it directly).
    egressPorts: withSecret ? [other.port] : [registry.port, other.port],
    ...(withSecret ? { destinationSecrets: { ca, secrets: [secret()] } } : {}),
    budgetTokens: 1000,
    onBudgetExceeded: () => {},
    lookup,
    addressAllowed: (address) => address === '127.0.0.1',
    audit,
    log: logger.log,
  });
  return proxy.address;
}

/** curl through the proxy, trusting only the egress CA; the whole answer, headers included. */
async function curl(proxyUrl: string, url: string, extra: string[] = []) {
  const result = await runProcess(
    'curl',
    ['-sS', '-i', '--suppress-connect-headers', '--proxy', proxyUrl, '--cacert', caFile, ...extra, url],
    { timeoutMs: 30_000, okExitCodes: [0, 35, 56, 60] },
  );
  return result;
}

/** Every form the token could take. */
function leaks(text: string | Buffer): boolean {
  const buffer = typeof text === 'string' ? Buffer.from(text) : text;
  return [TOKEN, Buffer.from(TOKEN).toString('base64'), encodeURIComponent(TOKEN)].some((form) =>
    buffer.includes(form),
  );
}

async function everyFile(dir: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const entry of await readdir(dir, { recursive: true })) {
    const file = path.join(dir, entry);
    if ((await stat(file)).isFile()) parts.push(await readFile(file));
  }
  return Buffer.concat(parts);
}

describe('credentials bound to a destination', () => {
  it('are refused by the registry without the proxy adding them (the control)', async () => {
    const proxyUrl = await start(false);
    const { stdout } = await curl(proxyUrl, `${registry.url}private-greeting`);
    // Without a bound secret the connection is a plain tunnel: the registry's own certificate,
    // which the client does not trust.
    expect(stdout).not.toContain('HTTP/1.1 200');
    expect(registry.requests.filter((r) => r.authorized)).toEqual([]);
  });

  it('are added by the proxy to requests to their host: curl gets the package, and never the token', async () => {
    const proxyUrl = await start();
    const before = registry.requests.length;
    const { stdout } = await curl(proxyUrl, `${registry.url}private-greeting`);
    expect(stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(stdout).toContain(registry.pkg.integrity);
    const tarball = await runProcess(
      'curl',
      [
        '-sS',
        '--proxy',
        proxyUrl,
        '--cacert',
        caFile,
        `${registry.url}private-greeting/-/private-greeting-1.0.0.tgz`,
      ],
      { timeoutMs: 30_000, encoding: 'buffer' },
    );
    expect(tarball.stdout.length).toBeGreaterThan(100);
    expect(registry.requests.slice(before)).toEqual([
      { path: '/private-greeting', authorized: true },
      { path: '/private-greeting/-/private-greeting-1.0.0.tgz', authorized: true },
    ]);
    expect(leaks(stdout)).toBe(false);
  });

  it('replace whatever the client sent in that header', async () => {
    const proxyUrl = await start();
    const before = registry.requests.length;
    const { stdout } = await curl(proxyUrl, `${registry.url}private-greeting`, [
      '-H',
      'Authorization: Bearer guessed-by-the-guest',
    ]);
    expect(stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(registry.requests.slice(before)).toEqual([{ path: '/private-greeting', authorized: true }]);
  });

  it('are removed from anything the server sends back: headers, plain and compressed bodies', async () => {
    const proxyUrl = await start();
    for (const endpoint of ['echo', 'echo-gzip']) {
      const { stdout } = await curl(proxyUrl, `${registry.url}${endpoint}`, ['--compressed']);
      expect(stdout, endpoint).toMatch(/^HTTP\/1\.1 200/);
      expect(stdout, endpoint).toContain('x-ok: kept');
      expect(stdout, endpoint).not.toMatch(/x-seen-authorization/i);
      expect(stdout, endpoint).toContain('you sent: [airlock: credential removed]');
      expect(leaks(stdout), endpoint).toBe(false);
    }
    await proxy!.close();
    const requests = audit.events.filter((e) => e.type === 'proxy.egress' && e.data.path);
    expect(requests.map((e) => [e.data.path, e.data.secret, e.data.credential_removed])).toEqual([
      ['/echo', 'npm-private', 3],
      ['/echo-gzip', 'npm-private', 3],
    ]);
    expect(leaks(JSON.stringify(audit.events))).toBe(false);
    expect(leaks(logLines.join('\n'))).toBe(false);
  });

  it('serve a package to npm through the proxy; nothing npm wrote holds the token', async () => {
    const proxyUrl = await start();
    const project = path.join(work, 'npm-project');
    const home = path.join(work, 'npm-home');
    await runProcess('mkdir', ['-p', project, home], { timeoutMs: 5_000 });
    await writeFile(
      path.join(project, 'package.json'),
      '{"name":"consumer","version":"1.0.0","private":true}',
    );
    // As in the guest (GUEST_CA_ENV): the system bundle with the egress CA appended.
    const bundle = path.join(home, 'ca-certificates.crt');
    await writeFile(bundle, `${await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8')}\n${ca.certPem}`);
    await runProcess(
      'npm',
      ['install', '--no-audit', '--no-fund', `private-greeting@${registry.pkg.version}`],
      {
        cwd: project,
        timeoutMs: 120_000,
        env: {
          HOME: home,
          npm_config_registry: registry.url,
          npm_config_https_proxy: proxyUrl,
          npm_config_cache: path.join(home, 'cache'),
          npm_config_update_notifier: 'false',
          NPM_CONFIG_CAFILE: bundle,
        },
      },
    );
    const installed = await readFile(
      path.join(project, 'node_modules', 'private-greeting', 'index.js'),
      'utf8',
    );
    expect(installed).toContain(registry.pkg.marker);
    expect(leaks(await everyFile(project))).toBe(false);
    expect(leaks(await everyFile(home))).toBe(false);
  }, 180_000);

  it('leave every other host a plain tunnel with its own certificate', async () => {
    const proxyUrl = await start();
    const port = Number(new URL(proxyUrl).port);
    const issuer = await new Promise<string>((resolve, reject) => {
      const socket: Socket = connect(port, '127.0.0.1', () =>
        socket.write(`CONNECT other.private.test:${other.port} HTTP/1.1\r\n\r\n`),
      );
      socket.once('data', () => {
        const tls = tlsConnect({ socket, servername: 'other.private.test', rejectUnauthorized: false });
        tls.on('secureConnect', () => {
          resolve(String(tls.getPeerCertificate().issuer.CN));
          tls.destroy();
        });
        tls.on('error', reject);
      });
      socket.on('error', reject);
    });
    expect(issuer).toBe('airlock egress CA test registry');
    expect(issuer).not.toBe('airlock egress CA test');
    const connects = () =>
      audit.events.filter((e) => e.type === 'proxy.egress' && e.data.method === 'CONNECT');
    await waitFor(() => connects().length > 0);
    expect(connects().map((e) => [e.data.host, e.data.reason])).toEqual([['other.private.test', undefined]]);
  });

  it('are never sent over plain HTTP', async () => {
    const proxyUrl = await start();
    const { stdout } = await runProcess(
      'curl',
      ['-sS', '-i', '--proxy', proxyUrl, `http://${REGISTRY_HOST}:${registry.port}/private-greeting`],
      { timeoutMs: 30_000 },
    );
    expect(stdout).toMatch(/^HTTP\/1\.1 403/);
    expect(stdout).toContain('only sent over https');
  });
});
