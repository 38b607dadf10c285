import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import type { DebianSource } from '../../src/proxy/debian-sources.ts';
import { headerSecret } from '../../src/proxy/destination-secret.ts';
import { createEgressCa, type EgressCa } from '../../src/proxy/egress-ca.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { installDebianPackages } from '../../src/sandbox/guest-apt.ts';
import { GUEST_CA_ENV, installEgressCa } from '../../src/sandbox/guest-ca.ts';
import type { MicroVm } from '../../src/sandbox/micro-vm.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import { GUEST_PROXY_ADDRESS } from '../../src/sandbox/qemu-args.ts';
import { type DebianFixtureServer, serveDebianFixture } from '../helpers/debian-fixture.ts';
import {
  containsSecret,
  expectCanariesFound,
  expectNotInGuest,
  scanCanaries,
  scanVm,
} from '../helpers/guest-scan.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { type PrivateRegistry, startPrivateRegistry } from '../helpers/private-registry.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { testVmImage } from '../helpers/vm-image.ts';

// A real VM gets what an environment build installs, through its proxy only: Debian packages from
// the proxy's Debian route (here a local repository built from .deb files at set-up), and a package
// from a private registry whose credential the proxy adds. The credential is then searched for in
// the guest's processes, kernel command line, serial log, RAM and disks, and found nowhere.

const TOKEN = `npm_private_${randomBytes(18).toString('hex')}`;
const REGISTRY_HOST = 'registry.private.test';
const AGENT_UID = 1000;
const PROXY = `http://${GUEST_PROXY_ADDRESS}:80`;

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let dir: string;
let registry: PrivateRegistry;
let debian: DebianFixtureServer;
let archives: DebianSource[];
let ca: EgressCa;
let proxy: TaskProxy;
let sandbox: MicroVmSandbox;
let vm: MicroVm;
const audit = new RecordingAudit();

async function run(
  argv: string[],
  options: { uid?: number; env?: Record<string, string>; timeoutMs?: number } = {},
) {
  let out = '';
  const result = await vm.exec(
    {
      argv,
      timeoutMs: options.timeoutMs ?? 300_000,
      ...(options.uid ? { uid: options.uid } : {}),
      env: options.env ?? {},
    },
    (_stream, data) => {
      out += data;
    },
  );
  return { code: result.code, out };
}

beforeAll(async () => {
  const image = testVmImage();
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-guest-deps-'));
  debian = await serveDebianFixture();
  archives = [debian.archive];
  registry = await startPrivateRegistry({ host: REGISTRY_HOST, expectedAuthorization: `Bearer ${TOKEN}` });
  ca = await createEgressCa({ dir: path.join(dir, 'egress-ca'), hosts: [REGISTRY_HOST], label: 'e2e' });
  const { log } = memoryLogger();
  proxy = await startTaskProxy({
    taskId: 'deps',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/deps',
    listen: { socketPath: path.join(dir, 'proxy', 'proxy.sock') },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {},
    egressAllow: [],
    destinationSecrets: {
      ca,
      secrets: [
        headerSecret({
          name: 'npm-private',
          host: REGISTRY_HOST,
          port: registry.port,
          header: 'authorization',
          scheme: 'Bearer',
          value: TOKEN,
          upstreamCa: registry.caPem,
        }),
      ],
    },
    debianArchives: archives,
    budgetTokens: 1000,
    onBudgetExceeded: () => {},
    lookup: async (host) => {
      if (host !== REGISTRY_HOST) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
      return [{ address: '127.0.0.1', family: 4 }];
    },
    addressAllowed: (address) => address === '127.0.0.1',
    audit,
    log,
  });
  sandbox = new MicroVmSandbox({ image, accel: 'tcg', dataDir: dir, log, tscKhz: hostTscKhz() });
  vm = (await sandbox.create({
    taskId: 'deps',
    cpus: 1,
    memoryMib: 1024,
    diskMib: 1024,
    proxySocket: proxy.address,
    outputLimitBytes: 16 * 1024 * 1024,
  })) as MicroVm;
}, 300_000);

afterAll(async () => {
  await vm?.destroy();
  await proxy?.close();
  await registry?.close();
  await debian?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('what an environment build installs, through the proxy only', () => {
  it('installs python3-pytest as root from the Debian route, and pytest runs', async () => {
    await installDebianPackages(vm, archives, ['python3-pytest']);
    await vm.writeFile('/home/agent/test_sum.py', 'def test_sum():\n    assert sum([1, 2]) == 3\n', {
      uid: AGENT_UID,
      mode: 0o644,
    });
    const version = await run(['pytest', '--version'], { uid: AGENT_UID });
    expect(version.out).toMatch(/pytest \d+\.\d+/);
    const tests = await run(
      ['python3', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '/home/agent/test_sum.py'],
      {
        uid: AGENT_UID,
      },
    );
    expect(tests.out).toContain('1 passed');
    expect(tests.code).toBe(0);
    // Every package came from the fixture, through the proxy's route, each request audited.
    expect(debian.requests).toContain('/dists/bookworm/Release');
    expect(debian.requests.some((p) => p.startsWith('/pool/python3-pytest_'))).toBe(true);
    const routed = audit.events.filter((e) => e.type === 'proxy.debian');
    expect(routed.length).toBeGreaterThanOrEqual(debian.requests.length);
    expect(routed.every((e) => e.data.decision === 'forwarded' && e.data.method === 'GET')).toBe(true);
  }, 1_800_000);

  it('refuses anything but reading on the Debian route', async () => {
    const post = await run([
      'node',
      '-e',
      `fetch("http://${GUEST_PROXY_ADDRESS}/debian/0/dists/bookworm/Release", { method: "POST", body: "x" }).then((r) => console.log(r.status))`,
    ]);
    expect(post.out.trim()).toBe('405');
  }, 120_000);

  it('fetches a package from a private registry with a credential the guest never holds', async () => {
    await installEgressCa(vm, ca);
    // As a build's setup would: the agent user, the proxy in the environment, the CA trusted.
    const env = {
      ...GUEST_CA_ENV,
      HTTPS_PROXY: PROXY,
      NODE_USE_ENV_PROXY: '1',
      HOME: '/home/agent',
    };
    const script = `
      const base = ${JSON.stringify(registry.url)};
      const doc = await (await fetch(base + "private-greeting")).json();
      const tarball = await fetch(doc.versions["1.0.0"].dist.tarball);
      require("node:fs").writeFileSync("/home/agent/pkg.tgz", Buffer.from(await tarball.arrayBuffer()));
      const echo = await fetch(base + "echo");
      require("node:fs").writeFileSync("/home/agent/echo.txt", JSON.stringify([...echo.headers]) + await echo.text());
      console.log("fetched", tarball.status, echo.status);
    `;
    const fetched = await run(['node', '--input-type=commonjs', '-e', `(async () => {${script}})()`], {
      uid: AGENT_UID,
      env,
    });
    expect(fetched.out).toContain('fetched 200 200');
    const unpacked = await run(['tar', '-xzOf', '/home/agent/pkg.tgz', 'package/index.js'], {
      uid: AGENT_UID,
    });
    expect(unpacked.out).toContain(registry.pkg.marker);
    expect(registry.requests.filter((r) => !r.authorized)).toEqual([]);
    expect(registry.requests.map((r) => r.path)).toContain('/echo');

    const canaries = scanCanaries();
    const found = await scanVm(vm, canaries);
    expectCanariesFound(found, canaries);
    // The echo's answer is on the disk and in RAM, with the credential cut out.
    expect(containsSecret(found.memory, 'credential removed')).toBe(true);
    expectNotInGuest(found, 'registry credential', TOKEN);
  }, 900_000);
});
