// npm run bench -- start [--runs 5] [--task-runs 5] [--fleet 8]
// How long a task waits to start, three ways, in one run on this machine:
// - per task (bench/start-tasks.ts): from a task dequeued (`task.state starting`) to its agent
//   running (the agent's first output), for a cold boot with a clone, an environment restore with
//   its workspace brought up to date, and a warm-pool take with the same; each phase from the
//   audit record, and how each workspace got its delta (`delta_paths`).
//   These are the issue's `cold_p50_ms`, `restore_p50_ms`, `warm_p50_ms` and ratios; `build_s` is
//   the environment build (clone, setup, freeze).
// - per VM (`vm_*`): from asking the sandbox for a VM to the first command answered in it, for a
//   cold boot, a restore from a snapshot, and a warm-pool take, the take split into the take itself
//   and the first command after it, with the pool's refill running meanwhile (as in production) and
//   held back (`vm_warm_quiet_*`).
// - the private host memory of each of --fleet VMs restored from one snapshot against as many
//   cold-booted ones, all running at once.
// Writes bench/results/start.json.
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
import { deltaPaths, measureTaskStarts, startFigures } from './start-tasks.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    'task-runs': { type: 'string', default: '5' },
    fleet: { type: 'string', default: '8' },
  },
});
const runs = Number(values.runs);
const taskRuns = Number(values['task-runs']);
const fleet = Number(values.fleet);
const image = testVmImage();
const { log } = memoryLogger();
const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-start-'));
const accel = await benchAccelerator(image, dir, log);
const sandboxIn = (name: string, pool: { warmPool?: number; maxVms?: number } = {}) =>
  new MicroVmSandbox({
    image,
    accel,
    dataDir: path.join(dir, name),
    log,
    tscKhz: hostTscKhz(),
    snapshotDir: path.join(dir, 'snapshots'),
    ...pool,
  });
// Cold boots and restores, with no pool to refill behind them.
const sandbox = sandboxIn('data');
// Warm takes: a pool of one, and at most two VMs, so that while a "keeper" VM runs a take leaves no
// room for a refill (the quiet take); without the keeper the pool refills at once, as in production.
const pooled = sandboxIn('pooled', { warmPool: 1, maxVms: 2 });
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
  await Promise.race([pooled.whenWarm(snapshot), expired]).finally(() => clearTimeout(timer));
}

const p50 = (values: number[]) => round(median(values));
const p95 = (values: number[]) => round(quantile(values, 0.95));

try {
  const t = performance.now();
  const first = await sandbox.create(spec('base'));
  const baseMs = performance.now() - t;
  await first.destroy();
  const [base] = readdirSync(path.join(dir, 'snapshots'));
  const snapshot = base ? await sandbox.openSnapshot(path.join(dir, 'snapshots', base)) : undefined;
  if (!snapshot) throw new Error('no base snapshot was made');

  const cold: number[] = [];
  const restore: number[] = [];
  const restoreStep: number[] = [];
  const warm = { total: [] as number[], take: [] as number[] };
  const quiet = { total: [] as number[], take: [] as number[] };
  for (let i = 0; i < runs; i++) {
    // Alternated, so load changes on a shared machine touch every path alike; nothing else runs
    // during a measurement (a refill in flight is waited for: whenWarm).
    const c = await startToFirstExec(() => sandbox.create(spec(`cold${i}`, 'cold')));
    cold.push(c.total);
    await c.vm.destroy();
    const r = await startToFirstExec(() => sandbox.create(spec(`restore${i}`, snapshot)));
    restore.push(r.total);
    restoreStep.push(r.step);
    await r.vm.destroy();

    // The keeper's restore fills the pool; while it runs, a take leaves no room for a refill.
    const keeper = await pooled.create(spec(`keeper${i}`, snapshot));
    await waitWarm(snapshot);
    const q = await startToFirstExec(() => pooled.create(spec(`quiet${i}`, snapshot)));
    quiet.total.push(q.total);
    quiet.take.push(q.step);
    await Promise.all([q.vm.destroy(), keeper.destroy()]);
    // Filled again by a restore of its own; then a take starts a refill at once, beside its first
    // command, as in production.
    await (await pooled.create(spec(`filler${i}`, snapshot))).destroy();
    await waitWarm(snapshot);
    const w = await startToFirstExec(() => pooled.create(spec(`warm${i}`, snapshot)));
    warm.total.push(w.total);
    warm.take.push(w.step);
    await waitWarm(snapshot);
    await w.vm.destroy();
    await pooled.drainWarmPool(snapshot);
    process.stderr.write(
      `vm ${i + 1}/${runs}: cold ${Math.round(c.total)} restore ${Math.round(r.total)} warm ${Math.round(w.total)} quiet ${Math.round(q.total)} ms\n`,
    );
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
  const privateCold = await memory('cold');

  const tasks = await measureTaskStarts(taskRuns, accel);
  const figure = (path: 'cold' | 'restore' | 'warm') => startFigures(tasks.starts[path]);
  const total = (path: 'cold' | 'restore' | 'warm') => median(tasks.starts[path].map((s) => s.total));

  writeResults('start', {
    accel,
    runs,
    task_runs: taskRuns,
    fleet,
    cold_p50_ms: figure('cold').total_p50_ms,
    cold_p95_ms: figure('cold').total_p95_ms,
    restore_p50_ms: figure('restore').total_p50_ms,
    restore_p95_ms: figure('restore').total_p95_ms,
    warm_p50_ms: figure('warm').total_p50_ms,
    warm_p95_ms: figure('warm').total_p95_ms,
    restore_ratio: round(total('restore') / total('cold'), 3),
    warm_ratio: round(total('warm') / total('cold'), 3),
    restore_step_p50_ms: p50(restoreStep),
    private_mib_restored: p50(privateRestored),
    private_mib_cold: p50(privateCold),
    build_s: round(tasks.buildMs / 1000),
    task_phases: { cold: figure('cold'), restore: figure('restore'), warm: figure('warm') },
    delta_paths: { restore: deltaPaths(tasks.starts.restore), warm: deltaPaths(tasks.starts.warm) },
    vm_cold_p50_ms: p50(cold),
    vm_cold_p95_ms: p95(cold),
    vm_restore_p50_ms: p50(restore),
    vm_restore_p95_ms: p95(restore),
    vm_warm_p50_ms: p50(warm.total),
    vm_warm_p95_ms: p95(warm.total),
    vm_warm_take_p50_ms: p50(warm.take),
    vm_warm_quiet_p50_ms: p50(quiet.total),
    vm_warm_quiet_p95_ms: p95(quiet.total),
    vm_warm_quiet_take_p50_ms: p50(quiet.take),
    vm_restore_ratio: round(median(restore) / median(cold), 3),
    vm_warm_ratio: round(median(warm.total) / median(cold), 3),
    vm_warm_quiet_ratio: round(median(quiet.total) / median(cold), 3),
    vm_base_snapshot_s: round(baseMs / 1000),
    targets: {
      restore_ratio: '<= 0.2',
      warm_ratio: '<= 0.05',
      private_mib_restored: '< 0.5 x private_mib_cold',
    },
    note: "cold/restore/warm_* and the ratios are per task: task.state starting to the agent's first output (audit timestamps), cold = base image booted cold and cloned, restore = the environment restored and its workspace brought up to date with the delta, warm = a warm VM of the environment taken and the same; delta_paths counts how (host_mirror: a pack from the host's mirror and one guest command; guest_fetch: git fetch in the guest); task_phases splits them into vm (token, proxy, VM), workspace (delta or clone, checkout, prompt) and agent (exec sent to first output). build_s is that environment's build. vm_* are per VM: asking the sandbox for one to the first command answered as the agent user; the take is create() alone; vm_warm has the pool refilling beside the first command (production), vm_warm_quiet has no refill then. restore_step is spawn to the guest made unique. private_mib is Private_Clean + Private_Dirty of each VMM after one command ran.",
  });
} finally {
  await rm(dir, { recursive: true, force: true });
}
