import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createReadStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import type { Vm } from '../../src/sandbox/sandbox.ts';
import type { VmImage } from '../../src/sandbox/vm-image.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Real microVMs (TCG on machines without working KVM). One VM is shared by the read-only checks.
let image: VmImage;
let dir: string;
let sandbox: MicroVmSandbox;
let vm: Vm;
let proxy: Server;
let rootDigestBefore: string;
const execs: string[][] = [];

const sha256 = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });

/** Whether a process runs (a zombie waiting for its parent to reap it does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function run(target: Vm, script: string, timeoutMs = 60_000) {
  let stdout = '';
  let stderr = '';
  const result = await target.exec({ argv: ['sh', '-c', script], timeoutMs }, (stream, data) => {
    if (stream === 'stdout') stdout += data;
    else stderr += data;
  });
  return { ...result, stdout, stderr };
}

beforeAll(async () => {
  image = testVmImage();
  rootDigestBefore = await sha256(image.rootfs);
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-vm-'));
  // A stand-in for the task's proxy listener: answers any connection with a fixed HTTP response.
  proxy = createServer((socket) => {
    socket.once('data', () =>
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\nproxy reached'),
    );
  }).listen(path.join(dir, 'proxy.sock'));
  sandbox = new MicroVmSandbox({
    image,
    accel: 'tcg',
    dataDir: dir,
    log: memoryLogger().log,
    tscKhz: hostTscKhz(),
  });
  vm = await sandbox.create({
    taskId: 'vmtest',
    cpus: 1,
    memoryMib: 512,
    diskMib: 256,
    proxySocket: path.join(dir, 'proxy.sock'),
    outputLimitBytes: 4 * 1024 * 1024,
  });
  vm.onExecAudit((r) => execs.push(r.argv));
}, 180_000);

afterAll(async () => {
  await vm?.destroy();
  // Whatever a failed test left in the data directory (a child's VM) goes too.
  if (image && dir)
    await new MicroVmSandbox({ image, accel: 'tcg', dataDir: dir, log: memoryLogger().log }).reapOrphans();
  proxy?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a microVM', () => {
  it('runs a command and streams its output', async () => {
    const result = await run(vm, 'echo hello from $(hostname); echo oops >&2; exit 3');
    expect(result).toMatchObject({ code: 3, stdout: 'hello from airlock\n', stderr: 'oops\n' });
  });

  it('reports every process executed in the guest', async () => {
    await run(vm, '/bin/true marker-a; ls /nonexistent-marker-b 2>/dev/null; exit 0');
    // Records travel through the guest's kernel log; the audit barrier waits for them.
    await vm.syncAudit(30_000);
    expect(execs).toContainEqual(['/bin/true', 'marker-a']);
    expect(execs).toContainEqual(['ls', '/nonexistent-marker-b']);
  });

  it('passes exactly the environment it is given', async () => {
    const result = await vm.exec({ argv: ['env'], env: { ONLY_THIS: '1' } }, () => {});
    expect(result.code).toBe(0);
    let out = '';
    await vm.exec({ argv: ['env'], env: { ONLY_THIS: '1' } }, (_s, d) => {
      out += d;
    });
    const names = out
      .trim()
      .split('\n')
      .map((l) => l.split('=')[0])
      .sort();
    expect(names).toEqual(['HOME', 'LANG', 'ONLY_THIS', 'PATH']);
  });

  it('reaches its proxy and nothing else: not the host, the metadata address, the internet or DNS', async () => {
    const probeOutput: Record<number, string> = {};
    const probe = (target: string) =>
      `if timeout 5 busybox wget -q -O - http://${target}/ 2>/dev/null; then echo REACHED; else echo BLOCKED; fi`;
    expect((await run(vm, probe('10.0.2.100'))).stdout).toBe('proxy reachedREACHED\n');
    for (const target of [
      '10.0.2.2',
      '10.0.2.3',
      '169.254.169.254',
      '1.1.1.1',
      '8.8.8.8:53',
      '127.0.0.1:22',
    ]) {
      expect((await run(vm, probe(target))).stdout, target).toBe('BLOCKED\n');
    }
    const hostAddresses = execFileSync('hostname', ['-I'], { encoding: 'utf8' })
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    for (const address of hostAddresses.slice(0, 3)) {
      expect((await run(vm, probe(address))).stdout, address).toBe('BLOCKED\n');
    }
    const dns = await run(
      vm,
      'timeout 5 busybox nslookup example.com 10.0.2.3 >/dev/null 2>&1 && echo RESOLVED || echo NO_DNS',
    );
    expect(dns.stdout).toBe('NO_DNS\n');

    // The same over TCP, UDP and ICMP, as root and as the agent user, watched from the host: a
    // listener on every host address sees no connection and no datagram. (ICMP echo to 10.0.2.2
    // and 10.0.2.3 is answered by QEMU's user network itself, and 127.0.0.1 is the guest's own, so
    // those are left out of ICMP.)
    const tcpSeen: string[] = [];
    const udpSeen: string[] = [];
    const tcp = createServer((socket) => {
      tcpSeen.push(String(socket.remoteAddress));
      socket.destroy();
    });
    const udp = createSocket('udp4').on('message', (_m, from) => udpSeen.push(from.address));
    await new Promise<void>((resolve) => tcp.listen(0, '0.0.0.0', resolve));
    await new Promise<void>((resolve) => udp.bind(0, '0.0.0.0', resolve));
    try {
      const tcpPort = (tcp.address() as AddressInfo).port;
      const udpPort = udp.address().port;
      const hosts = ['10.0.2.2', '10.0.2.3', '127.0.0.1', ...hostAddresses.slice(0, 3)];
      const external = ['1.1.1.1', '8.8.8.8', '169.254.169.254'];
      const script = [
        ...hosts.map(
          (h) =>
            `timeout 5 busybox nc -w 1 ${h} ${tcpPort} </dev/null && echo TCP ${h}; ` +
            `echo airlock-probe | timeout 5 busybox nc -u -w 1 ${h} ${udpPort}`,
        ),
        ...[...hosts.slice(3), ...external].map(
          (h) => `timeout 5 ping -c 1 -W 2 ${h} >/dev/null 2>&1 && echo ICMP ${h}`,
        ),
        ...external.map(
          (h) => `timeout 5 busybox nslookup example.com ${h} >/dev/null 2>&1 && echo DNS ${h}`,
        ),
        'echo done',
      ].join('\n');
      for (const uid of [undefined, 1000]) {
        const probes = await vm.exec(
          {
            argv: ['sh', '-c', script],
            timeoutMs: 300_000,
            ...(uid ? { uid, env: { HOME: '/home/agent' } } : {}),
          },
          (stream, data) => {
            if (stream === 'stdout') probeOutput[uid ?? 0] = (probeOutput[uid ?? 0] ?? '') + data;
          },
        );
        expect(probes.code, `probes as uid ${uid ?? 0}`).toBe(0);
        expect(probeOutput[uid ?? 0], `probes as uid ${uid ?? 0}`).toBe('done\n');
      }
      // A datagram that got out would be here by now: the UDP probes ran seconds before the last
      // ICMP and DNS ones.
      expect(tcpSeen).toEqual([]);
      expect(udpSeen).toEqual([]);
    } finally {
      tcp.close();
      udp.close();
    }
  }, 600_000);

  it('kills a command at its timeout', async () => {
    const started = Date.now();
    const result = await vm.exec({ argv: ['sleep', 'infinity'], timeoutMs: 2000 });
    expect(result.signal).toBe('SIGKILL');
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('ends an exec when its main process exits, and kills and reports what the agent user left running', async () => {
    let out = '';
    const started = Date.now();
    // Both leftovers outlive the shell; the second holds the exec's stdout open from a new session.
    const result = await vm.exec(
      {
        argv: ['sh', '-c', 'nohup sleep 600 >/dev/null 2>&1 & setsid sleep 600 & echo done'],
        uid: 1000,
        env: { HOME: '/home/agent' },
        timeoutMs: 120_000,
      },
      (_s, d) => {
        out += d;
      },
    );
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(out).toBe('done\n');
    expect(Date.now() - started).toBeLessThan(30_000);
    const killed = await vm.killUserProcesses(1000);
    expect(killed.map((p) => p.argv)).toEqual([
      ['sleep', '600'],
      ['sleep', '600'],
    ]);
    const ps = await run(vm, 'ps -e -o uid=,pid=,args=');
    const agentProcesses = ps.stdout.split('\n').filter((line) => /^\s*1000\s/.test(line));
    expect(agentProcesses).toEqual([]);
    for (const { pid } of killed) expect(ps.stdout).not.toMatch(new RegExp(`^\\s*\\d+\\s+${pid}\\s`, 'm'));
    // Nothing left: a second call kills nothing.
    expect(await vm.killUserProcesses(1000)).toEqual([]);
  }, 90_000);

  it('contains a disk filler, a memory hog and a fork bomb run by the agent user', async () => {
    const asAgent = (script: string) => {
      let out = '';
      return vm
        .exec(
          { argv: ['bash', '-c', script], uid: 1000, env: { HOME: '/home/agent' }, timeoutMs: 120_000 },
          (_s, d) => {
            out += d;
          },
        )
        .then((r) => ({ ...r, out }));
    };
    const fill = await asAgent('dd if=/dev/zero of=/work/fill bs=1M count=2048 2>&1; rm -f /work/fill');
    expect(fill.out).toMatch(/No space left on device/);
    const hog = await asAgent('node -e "const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))" 2>&1');
    expect(hog.code === 0 && hog.signal === null).toBe(false);
    // No ulimit of its own: the image caps the agent user's processes.
    const bomb = await asAgent('bomb() { bomb | bomb & }; (bomb) 2>/dev/null; sleep 3; echo survived');
    expect(bomb.out).toContain('survived');
    await run(vm, 'pkill -9 -u 1000 || true');
    expect((await run(vm, 'echo still-alive')).stdout).toBe('still-alive\n');
  }, 400_000);
});

describe('teardown', () => {
  it('cannot see another VM running at the same time', async () => {
    const otherProxy = createServer((socket) => {
      socket.once('data', () =>
        socket.end('HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxy B'),
      );
    }).listen(path.join(dir, 'proxy-b.sock'));
    const other = await sandbox.create({
      taskId: 'vmtest-b',
      cpus: 1,
      memoryMib: 384,
      diskMib: 128,
      proxySocket: path.join(dir, 'proxy-b.sock'),
      outputLimitBytes: 1024 * 1024,
    });
    try {
      // B serves a page on its own address; B itself can fetch it (the listener works).
      const serve = await run(
        other,
        'mkdir -p /tmp/www && echo secret-of-b > /tmp/www/page && busybox httpd -p 7000 -h /tmp/www && ' +
          'busybox wget -q -O - http://10.0.2.15:7000/page',
      );
      expect(serve.stdout).toBe('secret-of-b\n');
      // A path that is closed is refused at once; an open one can take seconds under TCG on a busy
      // host, so the probe's own limit is generous.
      const probe = (target: string) =>
        `if timeout 30 busybox wget -q -O - ${target} 2>/dev/null; then echo; echo REACHED; else echo BLOCKED; fi`;
      // Each VM's user network is its own: B's address from A is A itself, and B's page is not there.
      expect((await run(vm, probe('http://10.0.2.15:7000/page'))).stdout).toBe('BLOCKED\n');
      // Each VM's proxy address leads to its own task's listener only.
      expect((await run(vm, probe('http://10.0.2.100/'))).stdout).toBe('proxy reached\nREACHED\n');
      expect((await run(other, probe('http://10.0.2.100/'))).stdout).toBe('proxy B\nREACHED\n');
      // Nothing else answers on A's segment: every neighbour is one of QEMU's own virtual hosts
      // (MAC 52:55:...), never a guest NIC (52:54:...).
      const neighbours = await run(vm, 'ping -c 1 -W 1 -b 10.0.2.255 >/dev/null 2>&1; ip neigh show');
      const macs = [...neighbours.stdout.matchAll(/lladdr (\S+)/g)].map((m) => m[1]!);
      expect(macs.length).toBeGreaterThan(0);
      for (const mac of macs) expect(mac).toMatch(/^52:55:/);
    } finally {
      await other.destroy();
      otherProxy.close();
    }
  }, 300_000);

  it('destroys the VM, deletes its overlay and leaves the golden image unchanged', async () => {
    const second = await sandbox.create({
      taskId: 'vmtest2',
      cpus: 1,
      memoryMib: 256,
      diskMib: 64,
      outputLimitBytes: 1e6,
    });
    await run(second, 'echo scribble > /etc/scribble; sync');
    const vmDirs = readdirSync(path.join(dir, 'vms'));
    expect(vmDirs.length).toBe(2);
    const overlay = path.join(dir, 'vms', second.id, 'root.qcow2');
    expect(existsSync(overlay)).toBe(true);
    expect(await second.destroy()).toEqual({ processGone: true, overlayDeleted: true });
    expect(existsSync(overlay)).toBe(false);
    expect(readdirSync(path.join(dir, 'vms')).length).toBe(1);
    expect(await sha256(image.rootfs)).toBe(rootDigestBefore);
  }, 300_000);

  it('stops a VM when the process that started it is killed (kill -9)', async () => {
    const { child, pid } = await startOrphanChild();
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await waitFor(() => !alive(pid), 30_000, `QEMU (pid ${pid}) to stop after its owner was killed`);
  }, 300_000);

  it("reaps, on the next start, the VMs of dead owners and leaves a live owner's VM running", async () => {
    const { child, vmId } = await startOrphanChild();
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const fresh = new MicroVmSandbox({ image, accel: 'tcg', dataDir: dir, log: memoryLogger().log });
    const reaped = await fresh.reapOrphans();
    // (An earlier test's killed child may have left its directory too: also a dead owner's.)
    expect(reaped).toContain('orphan');
    expect(reaped).not.toContain('vmtest');
    expect(existsSync(path.join(dir, 'vms', vmId))).toBe(false);
    // This file's shared VM belongs to this process, which is alive: it is not touched.
    expect(existsSync(path.join(dir, 'vms', vm.id))).toBe(true);
    expect(await run(vm, 'echo still-here')).toMatchObject({ code: 0, stdout: 'still-here\n' });
  }, 300_000);
});

/** Boots a VM in a child process (test/helpers/orphan-vm-child.ts) that then waits to be killed. */
async function startOrphanChild() {
  const child = spawn(
    process.execPath,
    [path.join(import.meta.dirname, '../helpers/orphan-vm-child.ts'), dir],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(String(d)));
      child.once('exit', (code) => reject(new Error(`the child exited (${code}) before its VM was ready`)));
    });
    const { pid, vmId } = JSON.parse(line) as { pid: number; vmId: string };
    expect(alive(pid)).toBe(true);
    return { child, pid, vmId };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}
