import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// docs/sandbox.md: nothing in airlock needs root once the image is built (deploy/ runs workers as
// their own user). Root's rights hide a file made read-only before mkfs writes it.
it.skipIf(!root)('makes a VM disk pair as a user without root', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-disks-'));
  dirs.push(dir);
  const nobody = Number(execFileSync('id', ['-u', 'nobody']).toString());
  chownSync(dir, nobody, nobody);
  writeFileSync(path.join(dir, 'rootfs.img'), Buffer.alloc(1024 * 1024));
  chownSync(path.join(dir, 'rootfs.img'), nobody, nobody);
  const script = `
    import { createVmDisks } from ${JSON.stringify(path.resolve('src/sandbox/disks.ts'))};
    const dir = ${JSON.stringify(dir)};
    await createVmDisks({ rootfs: dir + '/rootfs.img', overlay: dir + '/root.qcow2', scratch: dir + '/scratch.qcow2', diskMib: 64, templateDir: dir + '/templates' });
  `;
  execFileSync(
    'setpriv',
    [
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      '--',
      process.execPath,
      '--input-type=module',
      '-e',
      script,
    ],
    {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const template = path.join(dir, 'templates', 'scratch-64M.ext4');
  expect(statSync(template).mode & 0o777).toBe(0o444);
  expect(statSync(path.join(dir, 'scratch.qcow2')).uid).toBe(nobody);
});
