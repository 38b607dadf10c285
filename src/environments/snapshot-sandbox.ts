import type { Sandbox, Vm, VmSpec } from '../sandbox/sandbox.ts';

// The sandbox's snapshot API as announced for src/sandbox (lands on main with "Sandbox: snapshots");
// replaced by Sandbox itself once it does.

/** A VM's size: a snapshot restores only into a VM of exactly its shape. */
export interface VmShape {
  cpus: number;
  memoryMib: number;
  diskMib: number;
}

/** A VM frozen on disk, restorable many times at once. */
export interface VmSnapshot {
  readonly dir: string;
  readonly key: string;
  readonly shape: VmShape;
  readonly createdAt: string;
}

/** The sandbox with snapshots: VMs made freezable, frozen, and restored. */
export interface SnapshotSandbox extends Pick<Sandbox, 'imageDigest'> {
  create(
    spec: VmSpec & { from?: VmSnapshot | 'cold'; freezable?: boolean },
    signal?: AbortSignal,
  ): Promise<Vm>;
  freeze(vm: Vm, dir: string): Promise<VmSnapshot>;
  openSnapshot(dir: string): Promise<VmSnapshot | undefined>;
}
