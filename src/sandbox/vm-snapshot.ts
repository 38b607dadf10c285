import { createHash } from 'node:crypto';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { SandboxError } from '../errors.ts';
import { runProcess } from '../process/run-process.ts';
import type { QmpSession } from './qmp.ts';
import type { VmShape, VmSnapshot } from './sandbox.ts';

/** The files of a frozen VM, inside its snapshot directory. */
export const SNAPSHOT_FILES = {
  manifest: 'snapshot.json',
  /** Guest RAM, mapped privately by every VM restored from the snapshot. */
  memory: 'memory.ram',
  /** Device state (CPU, virtio queues, network), without RAM: a few tens of KB. */
  state: 'state.bin',
  root: 'root.qcow2',
  scratch: 'scratch.qcow2',
} as const;

/** What a restore must match exactly: QEMU loads device state only into the same machine. */
export interface SnapshotHost {
  imageDigest: string;
  accel: 'kvm' | 'tcg';
  /** `qemu-system-x86_64 --version`'s first line. */
  qemu: string;
  tscKhz: number | null;
}

export const VmShapeSchema = z.object({
  cpus: z.number().int().positive(),
  memoryMib: z.number().int().positive(),
  diskMib: z.number().int().positive(),
});

const SnapshotManifest = z.object({
  version: z.literal(1),
  key: z.string(),
  shape: VmShapeSchema,
  createdAt: z.string(),
  host: z.object({
    imageDigest: z.string(),
    accel: z.enum(['kvm', 'tcg']),
    qemu: z.string(),
    tscKhz: z.number().nullable(),
  }),
});

/** A VM's shape alone, from anything that has one (a VM request carries its task id too). */
export function shapeOf(of: VmShape): VmShape {
  return { cpus: of.cpus, memoryMib: of.memoryMib, diskMib: of.diskMib };
}

/**
 * sha256 over everything a restore must match; snapshots with another key are never loaded. Of
 * `shape` only its three numbers count: a whole VM request would give every task a key of its own.
 */
export function snapshotKey(host: SnapshotHost, shape: VmShape): string {
  return createHash('sha256')
    .update(JSON.stringify([1, host.imageDigest, host.accel, host.qemu, host.tscKhz, shapeOf(shape)]))
    .digest('hex');
}

/** Reads a snapshot directory; undefined when it is missing, incomplete or made for another host. */
export async function readSnapshot(dir: string, host: SnapshotHost): Promise<VmSnapshot | undefined> {
  let manifest: z.infer<typeof SnapshotManifest>;
  try {
    manifest = SnapshotManifest.parse(
      JSON.parse(await readFile(path.join(dir, SNAPSHOT_FILES.manifest), 'utf8')),
    );
  } catch {
    return undefined;
  }
  if (manifest.key !== snapshotKey(host, manifest.shape)) return undefined;
  return { dir, key: manifest.key, shape: manifest.shape, createdAt: manifest.createdAt };
}

/**
 * Makes `partial` (holding the frozen files) the snapshot at `dir`: manifest written last, every
 * file read-only, then one rename, so a crash leaves either no snapshot or a whole one. Resolves
 * with the snapshot already at `dir` when another process made it first.
 */
export async function sealSnapshot(
  partial: string,
  dir: string,
  host: SnapshotHost,
  of: VmShape,
): Promise<VmSnapshot> {
  const shape = shapeOf(of);
  const snapshot: VmSnapshot = {
    dir,
    key: snapshotKey(host, shape),
    shape,
    createdAt: new Date().toISOString(),
  };
  for (const file of [SNAPSHOT_FILES.state, SNAPSHOT_FILES.root, SNAPSHOT_FILES.scratch])
    await chmod(path.join(partial, file), 0o444);
  // QEMU 7.2 opens a private RAM file read-write (its `readonly` would make guest RAM read-only),
  // though a private mapping never writes it back: the owner keeps write permission.
  await chmod(path.join(partial, SNAPSHOT_FILES.memory), 0o600);
  const manifest = { version: 1, key: snapshot.key, shape, createdAt: snapshot.createdAt, host };
  await writeFile(path.join(partial, SNAPSHOT_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`, {
    mode: 0o444,
  });
  try {
    await rename(partial, dir);
    return snapshot;
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    const existing = await readSnapshot(dir, host);
    if (existing) return existing;
    throw new SandboxError(
      'snapshot_failed',
      `could not put the snapshot at ${dir}: ${(error as Error).message}`,
      {
        cause: error,
        hint: 'another snapshot of another host or image is in the way: delete the directory',
      },
    );
  }
}

/** Moves a file into a snapshot; across file systems, copies it keeping it sparse. */
export async function moveInto(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await runProcess('cp', ['--sparse=always', '--reflink=auto', from, to], { timeoutMs: 300_000 });
    await rm(from, { force: true });
  }
}

/** Copies a frozen VM's RAM for a VM restored from it that may itself be frozen later. */
export async function copyMemory(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await runProcess('cp', ['--sparse=always', '--reflink=auto', from, to], {
    timeoutMs: 300_000,
    ...(signal ? { signal } : {}),
  });
  await chmod(to, 0o600);
}

/**
 * Saves a running VM's device state to `stateFile`, RAM excluded (it is already in the VM's
 * shared memory file). The VM is stopped first and stays stopped; its disks are flushed and
 * released by QEMU when the save completes.
 */
export async function saveVmState(qmp: QmpSession, stateFile: string): Promise<void> {
  await qmp.execute('stop');
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'x-ignore-shared', state: true }],
  });
  await qmp.execute('migrate', { uri: `exec:cat > ${shellPath(stateFile)}` });
  await migrationDone(qmp, 'save');
}

/**
 * Loads device state into a VM started with `-incoming defer` over a snapshot's memory file; the
 * VM stays paused until `cont`.
 */
export async function loadVmState(qmp: QmpSession, stateFile: string): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'x-ignore-shared', state: true }],
  });
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellPath(stateFile)}` });
  await migrationDone(qmp, 'restore');
}

async function migrationDone(qmp: QmpSession, what: 'save' | 'restore', timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = z
      .object({ status: z.string().optional(), 'error-desc': z.string().optional() })
      .passthrough()
      .parse(await qmp.execute('query-migrate'));
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled')
      throw new SandboxError(
        'snapshot_failed',
        `the VM ${what} ${info.status}: ${info['error-desc'] ?? 'no reason given'}`,
      );
    if (Date.now() > deadline)
      throw new SandboxError('snapshot_failed', `the VM ${what} did not complete within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A path for QEMU's `exec:` (run by /bin/sh): quoted, and only paths that need no escaping. */
function shellPath(file: string): string {
  if (!/^[\w./+-]+$/.test(file))
    throw new SandboxError(
      'snapshot_failed',
      `snapshot path ${file} has characters QEMU's exec: cannot take`,
      {
        hint: 'use a data directory whose path has only letters, digits and . _ - / +',
      },
    );
  return `'${file}'`;
}
