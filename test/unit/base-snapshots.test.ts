import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { removeStaleBases } from '../../src/sandbox/microvm-sandbox.ts';
import { SNAPSHOT_FILES, type SnapshotHost, snapshotKey } from '../../src/sandbox/vm-snapshot.ts';

const host: SnapshotHost = {
  imageDigest: 'a'.repeat(64),
  accel: 'tcg',
  qemu: 'QEMU emulator version 7.2',
  tscKhz: 2_000_000,
};
const shape = { cpus: 1, memoryMib: 512, diskMib: 512 };
let root: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'airlock-bases-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function base(name: string, made: SnapshotHost = host): Promise<void> {
  const dir = path.join(root, name);
  await mkdir(dir);
  const manifest = {
    version: 1,
    key: snapshotKey(made, shape),
    shape,
    createdAt: new Date().toISOString(),
    host: made,
  };
  await writeFile(path.join(dir, SNAPSHOT_FILES.manifest), JSON.stringify(manifest));
}

describe('stale base snapshots', () => {
  it("keeps the base its key names, and deletes other hosts', misnamed and long-abandoned half-made ones", async () => {
    const key = snapshotKey(host, shape);
    const good = `base-${key.slice(0, 16)}`;
    await base(good);
    // What airlock made per task before its base snapshots were keyed by shape alone.
    await base('base-0070102cfb6860b6');
    await base('base-1111111111111111', { ...host, imageDigest: 'b'.repeat(64) });
    await mkdir(path.join(root, `${good}.partial-0a0b0c0d`));
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(path.join(root, `${good}.partial-0a0b0c0d`), old, old);
    await mkdir(path.join(root, `${good}.partial-fresh001`));
    await mkdir(path.join(root, 'env-kept'));

    await removeStaleBases(root, host);

    expect((await readdir(root)).sort()).toEqual([good, `${good}.partial-fresh001`, 'env-kept'].sort());
  });
});
