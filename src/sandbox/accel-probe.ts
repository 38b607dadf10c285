import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { Logger } from '../logger.ts';
import { runProcess } from '../process/run-process.ts';
import { createVmDisks } from './disks.ts';
import { qemuArgs } from './qemu-args.ts';
import type { VmImage } from './vm-image.ts';

const ProbeResult = z.object({
  accel: z.enum(['kvm', 'tcg']),
  reason: z.string(),
  key: z.string(),
  at: z.string(),
});
export type ProbeResult = z.infer<typeof ProbeResult>;

/**
 * Chooses the accelerator. `kvm` and `tcg` are taken as given; `auto` boots the image's bare
 * initrd (an init that only powers off) under KVM and uses KVM only if that guest really boots and
 * powers off in time — /dev/kvm can exist and still not run a stock kernel (a software hypervisor
 * dies on `lock cmpxchg16b`). The answer is cached per image and host kernel.
 */
export async function chooseAccelerator(options: {
  setting: 'auto' | 'kvm' | 'tcg';
  image: VmImage;
  cacheDir: string;
  log: Logger;
  timeoutMs?: number;
}): Promise<ProbeResult> {
  const key = `${options.image.digest}:${hostKernel()}`;
  if (options.setting !== 'auto') {
    return {
      accel: options.setting,
      reason: `AIRLOCK_ACCEL=${options.setting}`,
      key,
      at: new Date().toISOString(),
    };
  }
  const cacheFile = path.join(options.cacheDir, 'accel-probe.json');
  if (existsSync(cacheFile)) {
    const cached = ProbeResult.safeParse(JSON.parse(readFileSync(cacheFile, 'utf8')));
    if (cached.success && cached.data.key === key) return cached.data;
  }
  const result = await probe(options.image, options.timeoutMs ?? 20_000, key);
  options.log.info({ accel: result.accel, reason: result.reason }, 'accelerator chosen by probe boot');
  await mkdir(options.cacheDir, { recursive: true });
  await writeFile(cacheFile, JSON.stringify(result));
  return result;
}

async function probe(image: VmImage, timeoutMs: number, key: string): Promise<ProbeResult> {
  const at = new Date().toISOString();
  if (!existsSync('/dev/kvm')) return { accel: 'tcg', reason: '/dev/kvm does not exist', key, at };
  if (!existsSync(image.bareInitrd))
    return { accel: 'tcg', reason: 'the image has no bare initrd to probe with', key, at };
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-probe-'));
  try {
    const overlay = path.join(dir, 'root.qcow2');
    const scratch = path.join(dir, 'scratch.qcow2');
    await createVmDisks({ rootfs: image.rootfs, overlay, scratch, diskMib: 64, templateDir: dir });
    const args = qemuArgs({
      image,
      accel: 'kvm',
      cpus: 1,
      memoryMib: 256,
      overlay,
      scratch,
      controlSocket: path.join(dir, 'ctl.sock'),
      qmpSocket: path.join(dir, 'qmp.sock'),
      consoleLog: path.join(dir, 'console.log'),
      initrd: image.bareInitrd,
    });
    const started = performance.now();
    await runProcess('qemu-system-x86_64', args, { timeoutMs, detached: true });
    const ms = Math.round(performance.now() - started);
    return { accel: 'kvm', reason: `a guest booted and powered off under KVM in ${ms} ms`, key, at };
  } catch (error) {
    const why = (error as Error).message.split('\n').slice(0, 3).join(' ').slice(0, 300);
    return { accel: 'tcg', reason: `KVM could not run a guest (${why}); using TCG`, key, at };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function hostKernel(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The host's TSC frequency in kHz, for `tsc_early_khz=` under TCG (undefined when unknown). */
export function hostTscKhz(): number | undefined {
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
    return mhz ? Math.round(Number(mhz) * 1000) : undefined;
  } catch {
    return undefined;
  }
}
