import path from 'node:path';
import type { Logger } from '../logger.ts';
import { chooseAccelerator, hostTscKhz } from './accel-probe.ts';
import { ensureVmImage } from './image-builder.ts';
import { MicroVmSandbox } from './microvm-sandbox.ts';

/**
 * The production sandbox: the VM image (built on first use, with progress), the accelerator (a
 * cached probe boot decides under `auto`), and the microVM backend over them, restoring VMs from
 * base snapshots kept beside the image unless snapshots are off.
 */
export async function openSandbox(options: {
  cacheDir: string;
  dataDir: string;
  accel: 'auto' | 'kvm' | 'tcg';
  snapshots: 'on' | 'off';
  /** Warm VMs per snapshot in use (0: none). */
  warmPool?: number;
  /** VMs at once on this host (AIRLOCK_MAX_CONCURRENT_TASKS): tasks', builds', warm ones; none when unset. */
  maxVms?: number;
  log: Logger;
}): Promise<{ sandbox: MicroVmSandbox; accel: { accel: 'kvm' | 'tcg'; reason: string } }> {
  const { log } = options;
  const image = await ensureVmImage({ cacheDir: options.cacheDir, log });
  const accel = await chooseAccelerator({ setting: options.accel, image, cacheDir: options.cacheDir, log });
  log.info({ accel: accel.accel, reason: accel.reason, image: image.digest }, 'sandbox ready');
  const sandbox = new MicroVmSandbox({
    image,
    accel: accel.accel,
    dataDir: options.dataDir,
    log,
    tscKhz: hostTscKhz(),
    ...(options.maxVms ? { maxVms: options.maxVms } : {}),
    ...(options.snapshots === 'on'
      ? { snapshotDir: path.join(options.cacheDir, 'snapshots'), warmPool: options.warmPool ?? 0 }
      : {}),
  });
  return { sandbox, accel };
}
