import path from 'node:path';
import type { Logger } from '../src/logger.ts';
import { chooseAccelerator } from '../src/sandbox/accel-probe.ts';
import type { VmImage } from '../src/sandbox/vm-image.ts';

/** The accelerator a VM bench runs on: AIRLOCK_ACCEL, or a probe boot under `auto` (cached in `dir`). */
export async function benchAccelerator(image: VmImage, dir: string, log: Logger): Promise<'kvm' | 'tcg'> {
  const setting = (process.env.AIRLOCK_ACCEL as 'auto' | 'kvm' | 'tcg' | undefined) ?? 'auto';
  return (await chooseAccelerator({ setting, image, cacheDir: path.join(dir, 'cache'), log })).accel;
}
