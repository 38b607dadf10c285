import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { runProcess } from '../process/run-process.ts';

/** The guest's agent user owns the workspace's root directory. */
const AGENT_UID = 1000;

/**
 * Creates a VM's two disks, both copy-on-write so creation costs the same whatever their size: the
 * root overlay over the golden image, and the scratch disk (`/work`) over an empty ext4 file system
 * of the task's disk size. The empty file systems are made once per size on the host, where mkfs
 * is fast, instead of in every guest at boot.
 */
export async function createVmDisks(options: {
  rootfs: string;
  overlay: string;
  scratch: string;
  diskMib: number;
  /** Where the empty scratch file systems are kept, one per size. */
  templateDir: string;
}): Promise<void> {
  const template = await scratchTemplate(options.templateDir, options.diskMib);
  await Promise.all([qcow2Over(options.rootfs, options.overlay), qcow2Over(template, options.scratch)]);
}

/**
 * Creates a restored VM's two disks: copy-on-write overlays on a snapshot's frozen disks, so the
 * clone sees exactly what the frozen VM had written and changes only its own files.
 */
export async function createCloneDisks(options: {
  frozenRoot: string;
  frozenScratch: string;
  overlay: string;
  scratch: string;
}): Promise<void> {
  await Promise.all([
    qcow2Over(options.frozenRoot, options.overlay, 'qcow2'),
    qcow2Over(options.frozenScratch, options.scratch, 'qcow2'),
  ]);
}

/**
 * Rewrites a qcow2 overlay as an image of its own: what its backing file holds is copied in (only
 * what is allocated: holes stay holes, so an empty scratch file system adds a few MiB). A snapshot's
 * scratch disk is made so, because its backing file (the empty file system of its size, in the data
 * directory of the process that made it) may be gone when another process restores it.
 */
export async function detachBacking(file: string): Promise<void> {
  const standalone = `${file}.standalone`;
  try {
    await runProcess('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'qcow2', file, standalone], {
      timeoutMs: 600_000,
    });
    await rename(standalone, file);
  } finally {
    await rm(standalone, { force: true });
  }
}

function qcow2Over(backing: string, file: string, backingFormat: 'raw' | 'qcow2' = 'raw') {
  return runProcess('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', backing, file], {
    timeoutMs: 10_000,
  });
}

/** The empty ext4 file system of `diskMib` MiB, made on first use (sparse; written atomically). */
async function scratchTemplate(dir: string, diskMib: number): Promise<string> {
  const file = path.join(dir, `scratch-${diskMib}M.ext4`);
  if (existsSync(file)) return file;
  await mkdir(dir, { recursive: true });
  const partial = `${file}.${randomBytes(4).toString('hex')}.partial`;
  try {
    // Writable while mkfs writes it (root's rights hid a read-only mode; any other user could not
    // make it), read-only once it is the template.
    const handle = await open(partial, 'w', 0o644);
    await handle.truncate(diskMib * 1024 * 1024);
    await handle.close();
    await runProcess(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-m',
        '0',
        '-L',
        'work',
        '-E',
        `lazy_itable_init=1,lazy_journal_init=1,root_owner=${AGENT_UID}:${AGENT_UID}`,
        partial,
      ],
      { timeoutMs: 60_000 },
    );
    await chmod(partial, 0o444);
    await rename(partial, file);
  } finally {
    await rm(partial, { force: true });
  }
  return file;
}
