// npm run bench -- vm [--boots 20] [--concurrent 8]
// Boots VMs one after another and several at once on the chosen accelerator; measures boot to
// ready against a bare boot of the same kernel (init that only powers off) in the same run,
// overlay creation, teardown and host memory per VM. Writes bench/results/vm.json.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hostTscKhz } from '../src/sandbox/accel-probe.ts';
import { createVmDisks } from '../src/sandbox/disks.ts';
import { MicroVmSandbox } from '../src/sandbox/microvm-sandbox.ts';
import { qemuArgs } from '../src/sandbox/qemu-args.ts';
import { memoryLogger } from '../test/helpers/memory-logger.ts';
import { testVmImage } from '../test/helpers/vm-image.ts';
import { benchAccelerator } from './bench-accel.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: { boots: { type: 'string', default: '20' }, concurrent: { type: 'string', default: '8' } },
});
const boots = Number(values.boots);
const concurrent = Number(values.concurrent);
const image = testVmImage();
const { log } = memoryLogger();
const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-vm-'));
const accel = await benchAccelerator(image, dir, log);
const tscKhz = hostTscKhz();
const sandbox = new MicroVmSandbox({ image, accel, dataDir: dir, log, tscKhz });
const spec = { cpus: 1, memoryMib: 512, diskMib: 1024, outputLimitBytes: 1e6 };

const ready: number[] = [];
const bare: number[] = [];
const fork: number[] = [];
const teardown: number[] = [];
const rss: number[] = [];
const overhead: number[] = [];
const tcgCache: number[] = [];
const qemuFile: number[] = [];
const qemuAnon: number[] = [];
const templateDir = path.join(dir, 'scratch-templates');
const disks = () =>
  createVmDisks({
    rootfs: image.rootfs,
    overlay: path.join(dir, 'f.qcow2'),
    scratch: path.join(dir, 's.qcow2'),
    diskMib: spec.diskMib,
    templateDir,
  });
try {
  // The empty scratch file system is made once per disk size; measured apart from the per-VM fork.
  const t = performance.now();
  await disks();
  const scratchTemplateMs = performance.now() - t;
  for (let i = 0; i < boots; i++) {
    const t0 = performance.now();
    await disks();
    fork.push(performance.now() - t0);
    bare.push(bareBoot(i));
    const started = performance.now();
    const vm = await sandbox.create({ taskId: `bench${i}`, ...spec });
    ready.push(performance.now() - started);
    const memory = vmmMemoryMib(vm.id, spec.memoryMib);
    rss.push(memory.rss);
    overhead.push(memory.rss - memory.guestTouched);
    tcgCache.push(memory.tcgCache);
    qemuFile.push(memory.file);
    qemuAnon.push(memory.rss - memory.guestTouched - memory.tcgCache - memory.file);
    const down = performance.now();
    await vm.destroy();
    teardown.push(performance.now() - down);
  }
  const together: number[] = [];
  await Promise.all(
    Array.from({ length: concurrent }, async (_, i) => {
      const started = performance.now();
      const vm = await sandbox.create({ taskId: `conc${i}`, ...spec });
      together.push(performance.now() - started);
      await vm.destroy();
    }),
  );
  writeResults('vm', {
    accel,
    boots,
    boot_to_ready_p50_ms: round(median(ready)),
    boot_to_ready_p95_ms: round(quantile(ready, 0.95)),
    bare_boot_p50_ms: round(median(bare)),
    boot_ratio: round(median(ready) / median(bare)),
    fork_ms: round(median(fork)),
    scratch_template_once_ms: round(scratchTemplateMs),
    teardown_p50_ms: round(median(teardown)),
    host_rss_per_vm_mib: round(median(overhead)),
    vmm_rss_total_mib: round(median(rss)),
    tcg_code_cache_mib: round(median(tcgCache)),
    qemu_own_mib: round(median(overhead) - median(tcgCache)),
    qemu_file_backed_mib: round(median(qemuFile)),
    qemu_anon_mib: round(median(qemuAnon)),
    concurrent,
    concurrent_8_p50_ms: round(median(together)),
    targets: {
      boot_ratio: '<= 1.5',
      fork_ms: '< 50',
      host_rss_per_vm_mib: '< 64 beyond guest memory touched',
      kvm_boot_to_ready_ms: '< 300',
    },
    note: "host_rss_per_vm_mib is the VMM's RSS right after ready minus the resident part of the guest's RAM mapping (guest memory touched); under TCG it includes tcg_code_cache_mib (translated guest code, absent under KVM); qemu_own_mib is the rest, split into qemu_file_backed_mib (QEMU's binary and libraries, page cache shared by every VM on the host) and qemu_anon_mib (memory this VM's QEMU allocated for itself)",
  });
} finally {
  await rm(dir, { recursive: true, force: true });
}

function bareBoot(i: number): number {
  const overlay = path.join(dir, `bare${i}.qcow2`);
  const scratch = path.join(dir, `bare${i}-s.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image.rootfs, overlay]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', scratch, '64M']);
  const args = qemuArgs({
    image,
    accel,
    cpus: 1,
    memoryMib: 512,
    overlay,
    scratch,
    controlSocket: path.join(dir, `b${i}.sock`),
    qmpSocket: path.join(dir, `b${i}.qmp`),
    consoleLog: path.join(dir, `b${i}.log`),
    initrd: image.bareInitrd,
    tscKhz,
  });
  const started = performance.now();
  execFileSync('qemu-system-x86_64', args, { stdio: 'ignore', timeout: 120_000 });
  return performance.now() - started;
}

/**
 * The VMM's resident memory right after ready, split into guest RAM the boot touched (the resident
 * part of the one anonymous mapping the size of the guest's memory), TCG's translated-code cache
 * (anonymous executable mappings; absent under KVM) and the rest, which is QEMU itself.
 */
function vmmMemoryMib(
  vmId: string,
  memoryMib: number,
): { rss: number; guestTouched: number; tcgCache: number; file: number } {
  const record = JSON.parse(readFileSync(path.join(dir, 'vms', vmId, 'vm.json'), 'utf8')) as { pid: number };
  const status = readFileSync(`/proc/${record.pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  let guestTouched = 0;
  let tcgCache = 0;
  let file = 0;
  for (const mapping of readFileSync(`/proc/${record.pid}/smaps`, 'utf8').split(
    /\n(?=[0-9a-f]+-[0-9a-f]+ )/,
  )) {
    const [, perms = '', pathname = ''] = /^\S+ (\S+) \S+ \S+ \S+ *(.*)$/m.exec(mapping) ?? [];
    const size = Number(/^Size:\s+(\d+) kB/m.exec(mapping)?.[1] ?? 0) / 1024;
    const resident = Number(/^Rss:\s+(\d+) kB/m.exec(mapping)?.[1] ?? 0) / 1024;
    if (size >= memoryMib && size <= memoryMib + 4) guestTouched = Math.max(guestTouched, resident);
    else if (perms.includes('x') && pathname.trim() === '') tcgCache += resident;
    else if (pathname.startsWith('/')) file += resident;
  }
  return { rss, guestTouched, tcgCache, file };
}
