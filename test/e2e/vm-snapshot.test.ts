import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import type { Vm, VmSnapshot, VmSpec } from '../../src/sandbox/sandbox.ts';
import type { VmImage } from '../../src/sandbox/vm-image.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { processesNaming } from '../helpers/processes.ts';
import { testVmImage } from '../helpers/vm-image.ts';

// Real microVMs restored from snapshots (TCG here). The base snapshot is made in this file's own
// directory, so its making is tested too.
let image: VmImage;
let dir: string;
let sandbox: MicroVmSandbox;
const vms: Vm[] = [];
const servers: Server[] = [];
const logs = memoryLogger();

const SHAPE = { cpus: 1, memoryMib: 512, diskMib: 256 };

function spec(taskId: string, extra: Partial<VmSpec> = {}): VmSpec {
  return { taskId, ...SHAPE, outputLimitBytes: 4 * 1024 * 1024, ...extra };
}

async function track(vm: Promise<Vm>): Promise<Vm> {
  const started = await vm;
  vms.push(started);
  return started;
}

async function run(vm: Vm, script: string) {
  let stdout = '';
  let stderr = '';
  const result = await vm.exec({ argv: ['sh', '-c', script], timeoutMs: 60_000 }, (stream, data) => {
    if (stream === 'stdout') stdout += data;
    else stderr += data;
  });
  return { ...result, stdout, stderr };
}

/**
 * A stand-in for a task proxy that keeps the first bytes of each connection: a TLS ClientHello's
 * 32-byte client random sits at offset 11 (5 bytes of record header, 4 of handshake header, 2 of
 * version).
 */
function clientHelloRecorder(socketPath: string) {
  const randoms: string[] = [];
  const server = createServer((socket) => {
    let head = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length >= 43) {
        if (head[0] === 0x16 && head[5] === 0x01) randoms.push(head.subarray(11, 43).toString('hex'));
        socket.destroy();
      }
    });
    socket.on('error', () => {});
  }).listen(socketPath);
  servers.push(server);
  return randoms;
}

beforeAll(async () => {
  image = testVmImage();
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-snap-'));
  sandbox = new MicroVmSandbox({
    image,
    accel: 'tcg',
    dataDir: path.join(dir, 'data'),
    log: logs.log,
    tscKhz: hostTscKhz(),
    snapshotDir: path.join(dir, 'snapshots'),
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.destroy()));
  for (const server of servers) server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('VMs restored from a snapshot', () => {
  it("makes the shape's base snapshot on first use and restores every later VM from it", async () => {
    const first = await track(sandbox.create(spec('first')));
    expect(first.start).toBe('restored');
    const bases = readdirSync(path.join(dir, 'snapshots'));
    expect(bases).toHaveLength(1);
    expect(bases[0]).toMatch(/^base-[0-9a-f]{16}$/);
    expect(readdirSync(path.join(dir, 'snapshots', bases[0] as string)).sort()).toEqual([
      'memory.ram',
      'root.qcow2',
      'scratch.qcow2',
      'snapshot.json',
      'state.bin',
    ]);
    const result = await run(first, 'echo restored; cat /proc/uptime >/dev/null');
    expect(result).toMatchObject({ code: 0, stdout: 'restored\n' });
    // A cold boot is still there when asked for.
    const cold = await track(sandbox.create(spec('cold', { from: 'cold' })));
    expect(cold.start).toBe('cold');
  }, 240_000);

  it('gives two VMs restored at once different randomness, TLS client randoms, identities and disks', async () => {
    const sockets = [path.join(dir, 'a.sock'), path.join(dir, 'b.sock')];
    const randoms = sockets.map((socket) => clientHelloRecorder(socket));
    // The base snapshot stands on its own: another process, with another data directory (and so
    // none of this one's empty scratch file systems), restores from it.
    await rm(path.join(dir, 'data', 'scratch-templates'), { recursive: true, force: true });
    const [a, b] = await Promise.all(
      sockets.map((socket, i) => track(sandbox.create(spec(`clone${i}`, { proxySocket: socket })))),
    );
    if (!a || !b) throw new Error('two VMs expected');
    expect(a.start).toBe('restored');
    // Tasks of one shape share its one base snapshot, whatever their task ids.
    expect(readdirSync(path.join(dir, 'snapshots'))).toHaveLength(1);
    const identity =
      'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; hostname; cat /etc/machine-id';
    const [outA, outB] = await Promise.all([run(a, identity), run(b, identity)]);
    const [urandomA, hostA, machineA] = outA.stdout.trim().split('\n');
    const [urandomB, hostB, machineB] = outB.stdout.trim().split('\n');
    expect(urandomA).toMatch(/^[0-9a-f]{64}$/);
    expect(urandomA).not.toBe(urandomB);
    expect(hostA).not.toBe(hostB);
    expect(machineA).toMatch(/^[0-9a-f]{32}$/);
    expect(machineA).not.toBe(machineB);

    const hello = `node -e "require('node:tls').connect({ host: '10.0.2.100', port: 80, servername: 'example.test' }).on('error', () => {})"`;
    await Promise.all([run(a, hello), run(b, hello)]);
    expect(randoms[0]).toHaveLength(1);
    expect(randoms[1]).toHaveLength(1);
    expect(randoms[0]?.[0]).not.toBe(randoms[1]?.[0]);

    // The clock is the host's, not the snapshot's.
    const clock = await run(a, 'date +%s');
    expect(Math.abs(Number(clock.stdout.trim()) - Date.now() / 1000)).toBeLessThan(30);

    // Each has a disk of its own over the same frozen one.
    await run(a, 'echo only-a > /work/mine && sync');
    const seen = await run(b, 'cat /work/mine 2>/dev/null || echo absent');
    expect(seen.stdout.trim()).toBe('absent');
  }, 240_000);

  it('keeps exec auditing locked and reporting in a restored VM', async () => {
    const vm = await track(sandbox.create(spec('audit')));
    const execs: string[][] = [];
    vm.onExecAudit((record) => execs.push(record.argv));
    const status = await run(vm, 'auditctl -s | grep -x "enabled 2"; /bin/true after-restore');
    expect(status.code).toBe(0);
    await vm.syncAudit(30_000);
    expect(execs).toContainEqual(['/bin/true', 'after-restore']);
  }, 240_000);

  it('freezes a prepared VM and restores what it had on disk and in memory', async () => {
    const builder = await track(sandbox.create(spec('builder', { freezable: true })));
    // A file on the workspace disk, and a process waiting in memory.
    const prepared = await run(builder, 'echo prepared > /work/state && sync && echo ok');
    expect(prepared.stdout).toBe('ok\n');
    const frozen: VmSnapshot = await sandbox.freeze(builder, path.join(dir, 'env-snapshot'));
    expect(frozen.shape).toEqual(SHAPE);
    expect(await builder.exited).toBeTruthy();
    expect(await sandbox.openSnapshot(frozen.dir)).toEqual(frozen);

    const [one, two] = await Promise.all([
      track(sandbox.create(spec('task-one', { from: frozen }))),
      track(sandbox.create(spec('task-two', { from: frozen }))),
    ]);
    if (!one || !two) throw new Error('two VMs expected');
    expect((await run(one, 'cat /work/state')).stdout).toBe('prepared\n');
    await run(one, 'echo changed > /work/state && sync');
    expect((await run(two, 'cat /work/state')).stdout).toBe('prepared\n');
  }, 240_000);

  it('hands out warm VMs, made unique, and drains them when asked', async () => {
    const pooled = new MicroVmSandbox({
      image,
      accel: 'tcg',
      dataDir: path.join(dir, 'pool-data'),
      log: logs.log,
      tscKhz: hostTscKhz(),
      snapshotDir: path.join(dir, 'snapshots'),
      warmPool: 1,
    });
    const snapshot = await sandbox.openSnapshot(path.join(dir, 'env-snapshot'));
    if (!snapshot) throw new Error('snapshot expected');
    const first = await track(pooled.create(spec('pool-first', { from: snapshot })));
    // The pool refills after a restore: wait for the VM it puts there (the test's timeout bounds it).
    await pooled.whenWarm(snapshot);
    expect(pooled.warmCount(snapshot)).toBe(1);
    const socket = path.join(dir, 'warm.sock');
    const randoms = clientHelloRecorder(socket);
    const warm = await track(pooled.create(spec('pool-warm', { from: snapshot, proxySocket: socket })));
    expect(warm.start).toBe('restored');
    // Its task's proxy is attached when it is taken, and it is its own machine.
    await run(
      warm,
      `node -e "require('node:tls').connect({ host: '10.0.2.100', port: 80 }).on('error', () => {})"`,
    );
    expect(randoms).toHaveLength(1);
    const [a, b] = await Promise.all([
      run(first, 'hostname; cat /work/state'),
      run(warm, 'hostname; cat /work/state'),
    ]);
    expect(a.stdout.split('\n')[0]).not.toBe(b.stdout.split('\n')[0]);
    expect(b.stdout.split('\n')[1]).toBe('prepared');
    await pooled.drainWarmPool(snapshot);
    expect(pooled.warmCount(snapshot)).toBe(0);

    // Closed (airlock stopping), it discards its warm VMs, one still warming up included (a
    // restore starts a refill), and keeps no more: none outlives it.
    const third = await track(pooled.create(spec('pool-third', { from: snapshot })));
    await pooled.close();
    expect(pooled.warmCount(snapshot)).toBe(0);
    await Promise.all([first.destroy(), warm.destroy(), third.destroy()]);
    expect(processesNaming(path.join(dir, 'pool-data'))).toEqual([]);
  }, 400_000);

  it('refuses a snapshot of another shape, and a VM that was not created freezable', async () => {
    const snapshot = await sandbox.openSnapshot(path.join(dir, 'env-snapshot'));
    if (!snapshot) throw new Error('snapshot expected');
    await expect(sandbox.create(spec('big', { memoryMib: 1024, from: snapshot }))).rejects.toMatchObject({
      code: 'snapshot_mismatch',
    });
    const plain = await track(sandbox.create(spec('plain')));
    await expect(sandbox.freeze(plain, path.join(dir, 'never'))).rejects.toMatchObject({
      code: 'snapshot_failed',
    });
    expect(existsSync(path.join(dir, 'never'))).toBe(false);
    expect(readdirSync(dir).filter((name) => name.includes('.partial-'))).toEqual([]);
    expect(await sandbox.openSnapshot(path.join(dir, 'never'))).toBeUndefined();
  }, 240_000);
});
