import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import type { Vm, VmSnapshot, VmSpec } from '../../src/sandbox/sandbox.ts';
import type { VmImage } from '../../src/sandbox/vm-image.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { processesNaming } from '../helpers/processes.ts';
import { testSnapshotDir, testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';

// The host's VM limit on real microVMs (TCG here): a launch past it waits for a VM to end, and an
// environment build counts against it without deadlocking the task that waits for the build.
let image: VmImage;
let dir: string;
const vms: Vm[] = [];
const logs = memoryLogger();

const spec = (taskId: string): VmSpec => ({
  taskId,
  cpus: 1,
  memoryMib: 512,
  diskMib: 256,
  outputLimitBytes: 1024 * 1024,
  from: 'cold',
});

const sandboxIn = (
  name: string,
  extra: { qemuBinary?: string; snapshotDir?: string; warmPool?: number; maxVms?: number } = {},
) =>
  new MicroVmSandbox({
    image,
    accel: 'tcg',
    dataDir: path.join(dir, name),
    log: logs.log,
    tscKhz: hostTscKhz(),
    maxVms: 1,
    ...extra,
  });

beforeAll(async () => {
  image = testVmImage();
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-vm-limit-'));
});

afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.destroy()));
  await rm(dir, { recursive: true, force: true });
});

describe('the host VM limit', () => {
  it('makes a launch past it wait until a running VM is destroyed, then boots it', async () => {
    const sandbox = sandboxIn('one');
    const dataDir = path.join(dir, 'one');
    const first = await sandbox.create(spec('first'));
    vms.push(first);
    expect(first.queuedMs).toBeUndefined();

    const second = sandbox.create(spec('second'));
    second.then((vm) => vms.push(vm)).catch(() => {});
    await waitFor(() => sandbox.vmPlaces.waiting === 1, 15_000, 'the second VM to wait for a place');
    // Waiting, it has started nothing: one QEMU, one VM directory.
    expect(processesNaming(dataDir)).toHaveLength(1);
    expect(readdirSync(path.join(dataDir, 'vms'))).toHaveLength(1);
    expect(
      logs.lines.some((l) => l.includes('"taskId":"second"') && l.includes('host at its VM limit')),
    ).toBe(true);

    // A launch that stops waiting leaves the queue with a SandboxError saying why.
    const stop = new AbortController();
    const third = sandbox.create(spec('third'), stop.signal);
    await waitFor(() => sandbox.vmPlaces.waiting === 2, 15_000, 'the third VM to wait');
    stop.abort(new Error('the task was cancelled'));
    await expect(third).rejects.toMatchObject({
      code: 'vm_wait_aborted',
      message: expect.stringContaining('the VM of third was not started: stopped (the task was cancelled)'),
    });
    expect(sandbox.vmPlaces.waiting).toBe(1);

    await first.destroy();
    const booted = await second;
    expect(booted.queuedMs).toBeGreaterThan(0);
    const result = await booted.exec({ argv: ['/bin/true'] });
    expect(result.code).toBe(0);
    expect(processesNaming(dataDir)).toHaveLength(1);
    await booted.destroy();
    expect(sandbox.vmPlaces).toEqual({ limit: 1, held: 0, waiting: 0 });
  }, 240_000);

  it('evicts a warm VM to make room for a VM asked for on a full host', async () => {
    const sandbox = sandboxIn('pooled', { snapshotDir: testSnapshotDir(image), warmPool: 1, maxVms: 2 });
    const dataDir = path.join(dir, 'pooled');
    // Restored from the base snapshot of its shape, which starts a refill of the pool beside it.
    const restored = await sandbox.create({ ...spec('restored'), from: undefined });
    vms.push(restored);
    expect(restored.start).toBe('restored');
    const snapshot = await baseSnapshotOf(sandbox, testSnapshotDir(image));
    await sandbox.whenWarm(snapshot);
    expect(sandbox.vmPlaces).toEqual({ limit: 2, held: 2, waiting: 0 });

    const cold = await sandbox.create(spec('cold'));
    vms.push(cold);
    expect(cold.queuedMs).toBeGreaterThanOrEqual(0);
    expect(sandbox.warmCount(snapshot)).toBe(0);
    expect(processesNaming(dataDir)).toHaveLength(2);
    expect(logs.lines.some((l) => l.includes('"taskId":"cold"') && l.includes('a warm VM makes room'))).toBe(
      true,
    );
    await Promise.all([restored.destroy(), cold.destroy()]);
    await sandbox.close();
    expect(sandbox.vmPlaces).toEqual({ limit: 2, held: 0, waiting: 0 });
  }, 300_000);

  it('frees the place of a VM that fails to boot', async () => {
    // A VMM that exits at once: the boot fails, and the next launch is not left waiting.
    const sandbox = sandboxIn('failing', { qemuBinary: '/bin/false' });
    for (const taskId of ['broken-1', 'broken-2'])
      await expect(sandbox.create(spec(taskId))).rejects.toMatchObject({ code: 'vm_boot_failed' });
    expect(sandbox.vmPlaces).toEqual({ limit: 1, held: 0, waiting: 0 });
  }, 60_000);
});

/** The base snapshot `sandbox` restores VMs of this file's shape from. */
async function baseSnapshotOf(sandbox: MicroVmSandbox, root: string): Promise<VmSnapshot> {
  for (const name of readdirSync(root)) {
    const snapshot = await sandbox.openSnapshot(path.join(root, name));
    const { cpus, memoryMib, diskMib } = spec('any');
    if (
      snapshot &&
      snapshot.shape.cpus === cpus &&
      snapshot.shape.memoryMib === memoryMib &&
      snapshot.shape.diskMib === diskMib
    )
      return snapshot;
  }
  throw new Error(`no base snapshot of this shape in ${root}`);
}

describe('an environment build under a VM limit of 1', () => {
  let world: E2eWorld;
  let sandbox: MicroVmSandbox;

  beforeAll(async () => {
    world = await startE2eWorld({
      files: {
        'scripts/agent.sh': '#!/bin/bash\nset -e\ncat built.txt > seen.txt\n',
        '.github/airlock.yml': [
          'agent: script',
          'script: scripts/agent.sh',
          'limits: { cpus: 1, memory_mib: 512, disk_mib: 1024 }',
          'environment:',
          '  setup: ["echo built > built.txt"]',
          '',
        ].join('\n'),
        '.gitignore': 'built.txt\n',
      },
      maxVms: 1,
      wrapSandbox: (real) => {
        sandbox = real as MicroVmSandbox;
        return real;
      },
    });
  }, 120_000);

  afterAll(async () => {
    await world?.close();
  });

  it("gets the build its VM while the task that waits for it holds the task slot, then the task's", async () => {
    const task = await world.labelIssue('Use the environment', 'Report what you see.');
    expect(task.state, task.reason ?? '').toBe('succeeded');
    const [build] = await world.airlock.environments!.store.listBuilds();
    expect(build).toMatchObject({ state: 'succeeded', trigger: { kind: 'task' } });

    // The task took the one task slot and waited for the build; the build's VM booted meanwhile,
    // and the task's VM after it was frozen.
    const taskEvents = await world.audit.events(task.id);
    const buildEvents = await world.audit.events(build!.id);
    const at = (events: typeof taskEvents, type: string) => {
      const event = events.find((e) => e.type === type);
      if (!event) throw new Error(`no ${type} event`);
      return Date.parse(event.ts);
    };
    expect(at(taskEvents, 'environment.waiting')).toBeLessThanOrEqual(at(buildEvents, 'vm.created'));
    expect(at(buildEvents, 'vm.frozen')).toBeLessThanOrEqual(at(taskEvents, 'vm.created'));
    expect(taskEvents.find((e) => e.type === 'vm.created')?.data.environment).toBe(build!.environmentId);
    expect(sandbox.vmPlaces).toEqual({ limit: 1, held: 0, waiting: 0 });
  }, 900_000);
});
