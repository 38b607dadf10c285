// npm run bench -- start [--runs 5] [--fleet 8]
// How long a VM takes from "start it" to its first command answered, three ways, in one run: a
// cold boot of the image; a restore from a snapshot (the base snapshot of the shape, made first
// and timed as build_s); a take from the warm pool (AIRLOCK_WARM_POOL's restored, paused VMs).
// Then the private host memory of each of --fleet VMs restored from one snapshot against as many
// cold-booted ones, all running at once. Writes bench/results/start.json.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hostTscKhz } from '../src/sandbox/accel-probe.ts';
import type { MicroVm } from '../src/sandbox/micro-vm.ts';
import { MicroVmSandbox } from '../src/sandbox/microvm-sandbox.ts';
import type { Vm, VmSnapshot } from '../src/sandbox/sandbox.ts';
import { memoryLogger } from '../test/helpers/memory-logger.ts';
import { testVmImage } from '../test/helpers/vm-image.ts';
import { benchAccelerator } from './bench-accel.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '5' }, fleet: { type: 'string', default: '8' } },
});
const runs = Number(values.runs);
const fleet = Number(values.fleet);
const image = testVmImage();
const { log } = memoryLogger();
const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-start-'));
const accel = await benchAccelerator(image, dir, log);
const sandbox = new MicroVmSandbox({
  image,
  accel,
  dataDir: path.join(dir, 'data'),
  log,
  tscKhz: hostTscKhz(),
  snapshotDir: path.join(dir, 'snapshots'),
  warmPool: 1,
});
const shape = { cpus: 1, memoryMib: 512, diskMib: 1024 };
const spec = (taskId: string, from?: VmSnapshot | 'cold') => ({
  taskId,
  ...shape,
  outputLimitBytes: 1e6,
  ...(from ? { from } : {}),
});

/** Start to the first command answered in the guest, as the agent user (what a task waits for). */
async function startToFirstExec(start: () => Promise<Vm>): Promise<{ total: number; step: number; vm: Vm }> {
  const t0 = performance.now();
  const vm = await start();
  const step = performance.now() - t0;
  const result = await vm.exec({ argv: ['/bin/true'], uid: 1000 });
  if (result.code !== 0) throw new Error(`first exec failed: ${result.code}`);
  return { total: performance.now() - t0, step, vm };
}

/** Private (not shared with any other process) resident memory of a VMM, in MiB. */
function privateMib(vm: Vm): number {
  const rollup = readFileSync(`/proc/${(vm as MicroVm).pid}/smaps_rollup`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
  return (kb('Private_Clean') + kb('Private_Dirty')) / 1024;
}

/** Resolves when a warm VM waits for `snapshot`; fails if the pool has not filled in 5 minutes. */
async function waitWarm(snapshot: VmSnapshot): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the warm pool did not fill within 5 minutes')), 300_000);
  });
  await Promise.race([sandbox.whenWarm(snapshot), expired]).finally(() => clearTimeout(timer));
}

try {
  const t = performance.now();
  const first = await sandbox.create(spec('base'));
  const buildMs = performance.now() - t;
  await first.destroy();
  const [base] = readdirSync(path.join(dir, 'snapshots'));
  const snapshot = base ? await sandbox.openSnapshot(path.join(dir, 'snapshots', base)) : undefined;
  if (!snapshot) throw new Error('no base snapshot was made');
  await sandbox.drainWarmPool(snapshot);

  const cold: number[] = [];
  const restore: number[] = [];
  const restoreStep: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternated, so load changes on a shared machine touch every path alike.
    const c = await startToFirstExec(() => sandbox.create(spec(`cold${i}`, 'cold')));
    cold.push(c.total);
    await c.vm.destroy();
    await sandbox.drainWarmPool(snapshot);
    const r = await startToFirstExec(() => sandbox.create(spec(`restore${i}`, snapshot)));
    restore.push(r.total);
    restoreStep.push(r.step);
    await waitWarm(snapshot);
    const w = await startToFirstExec(() => sandbox.create(spec(`warm${i}`, snapshot)));
    warm.push(w.total);
    await Promise.all([r.vm.destroy(), w.vm.destroy()]);
    await sandbox.drainWarmPool(snapshot);
  }

  const memory = async (from: VmSnapshot | 'cold') => {
    const vms = await Promise.all(
      Array.from({ length: fleet }, (_, i) => sandbox.create(spec(`fleet${i}`, from))),
    );
    // Each has run something, as a task's VM would have.
    await Promise.all(vms.map((vm) => vm.exec({ argv: ['/bin/true'] })));
    const figures = vms.map(privateMib);
    await Promise.all(vms.map((vm) => vm.destroy()));
    return figures;
  };
  const privateRestored = await memory(snapshot);
  await sandbox.drainWarmPool(snapshot);
  const privateCold = await memory('cold');

  writeResults('start', {
    accel,
    runs,
    fleet,
    cold_p50_ms: round(median(cold)),
    cold_p95_ms: round(quantile(cold, 0.95)),
    restore_p50_ms: round(median(restore)),
    restore_p95_ms: round(quantile(restore, 0.95)),
    warm_p50_ms: round(median(warm)),
    warm_p95_ms: round(quantile(warm, 0.95)),
    restore_ratio: round(median(restore) / median(cold), 3),
    warm_ratio: round(median(warm) / median(cold), 3),
    restore_step_p50_ms: round(median(restoreStep)),
    private_mib_restored: round(median(privateRestored)),
    private_mib_cold: round(median(privateCold)),
    build_s: round(buildMs / 1000),
    targets: {
      restore_ratio: '<= 0.2',
      warm_ratio: '<= 0.05',
      private_mib_restored: '< 0.5 x private_mib_cold',
    },
    note: 'each path is timed from asking the sandbox for a VM to the first command answered in it as the agent user; the workspace (clone for a cold start, fetch for an environment restore) is not included here: see the task bench. restore_step is spawn to the guest made unique. build_s is the first VM of the shape: a cold boot frozen into the base snapshot, then restored. private_mib is Private_Clean + Private_Dirty of each VMM (pages no other process shares), after one command ran.',
  });
} finally {
  await rm(dir, { recursive: true, force: true });
}
