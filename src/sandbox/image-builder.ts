import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { SandboxError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { loadVmImage, type VmImage } from './vm-image.ts';

const BUILD_SCRIPT = fileURLToPath(new URL('../../vm-images/build.sh', import.meta.url));
const PRUNE_SCRIPT = fileURLToPath(new URL('../../vm-images/prune.sh', import.meta.url));

/**
 * Returns the VM image for this recipe, building it first when it is missing (about a minute;
 * needs root for mmdebstrap). Build progress goes to the log line by line.
 */
export async function ensureVmImage(options: {
  cacheDir: string;
  log: Logger;
  force?: boolean;
}): Promise<VmImage> {
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    AIRLOCK_CACHE_DIR: options.cacheDir,
    HOME: process.env.HOME ?? '/root',
  };
  const dir = (await execa('bash', [BUILD_SCRIPT, '--print-dir'], { env, extendEnv: false })).stdout.trim();
  try {
    if (!options.force) return loadVmImage(dir);
  } catch {
    options.log.info({ dir }, 'the VM image is missing: building it now (about a minute)');
  }
  const build = execa('bash', [BUILD_SCRIPT, ...(options.force ? ['--force'] : [])], {
    env,
    extendEnv: false,
    reject: false,
    timeout: 30 * 60_000,
  });
  build.stderr?.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      const text = line.replace(/\x1b\[[0-9;]*m/g, '').trim();
      if (text) options.log.info({ build: text }, 'VM image build');
    }
  });
  const result = await build;
  if (result.exitCode !== 0) {
    throw new SandboxError(
      'image_build_failed',
      `building the VM image failed: ${String(result.stderr).trim().split('\n').slice(-5).join(' | ')}`,
      {
        hint: 'run `bash vm-images/build.sh` as root to see the whole output',
      },
    );
  }
  const image = loadVmImage(dir);
  // A new recipe's image is built beside the old ones: keep the one before it, remove the rest.
  const pruned = await execa('bash', [PRUNE_SCRIPT], { env, extendEnv: false, reject: false });
  if (pruned.exitCode !== 0)
    options.log.warn({ stderr: String(pruned.stderr).trim() }, 'could not remove older VM images');
  return image;
}
