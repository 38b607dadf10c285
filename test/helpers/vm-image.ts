import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadVmImage, type VmImage } from '../../src/sandbox/vm-image.ts';

/** The image .ci/setup.sh built (tests never build one themselves: that is the setup's job). */
export function testVmImage(): VmImage {
  const script = fileURLToPath(new URL('../../vm-images/build.sh', import.meta.url));
  const dir = execFileSync('bash', [script, '--print-dir'], { encoding: 'utf8' }).trim();
  try {
    return loadVmImage(dir);
  } catch (error) {
    throw new Error(
      `no VM image at ${dir}: run \`bash .ci/setup.sh --for test\` (or \`npm test\`) to build it`,
      {
        cause: error,
      },
    );
  }
}

/**
 * Where tests keep base snapshots: beside the images, as production keeps them in its cache
 * directory, so every test file restores from the same ones (each made once, on first use).
 */
export function testSnapshotDir(image: VmImage): string {
  return path.join(path.dirname(path.dirname(image.dir)), 'snapshots');
}
