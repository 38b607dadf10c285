import type { Socket } from 'node:net';
import type { ProcessHandle } from '../process/spawn-process.ts';
import type { GuestChannel } from './guest-channel.ts';
import type { MicroVmFiles } from './micro-vm.ts';
import type { ProxyGate } from './proxy-gate.ts';
import type { VmPlace } from './vm-places.ts';
import type { VmRecord } from './vm-registry.ts';

/** A QEMU process started for a VM, control channel connected; a restore waits paused. */
export interface SpawnedVm {
  vmId: string;
  record: VmRecord;
  files: MicroVmFiles;
  gate: ProxyGate | undefined;
  qemu: ProcessHandle;
  exited: Promise<string>;
  socket: Socket;
  /** Its place under the host's VM limit, released when its QEMU is gone. */
  place: VmPlace;
  /**
   * A warm VM's channel: it was run once before it was paused (made unique, one command as the
   * agent user), so that the code a task runs first is already translated under TCG.
   */
  channel?: GuestChannel;
}

/** How long warm VMs of a snapshot nobody has taken from are kept. */
export const WARM_IDLE_MS = 10 * 60_000;

/**
 * Restored, warmed-up, paused VMs kept per snapshot so that a task takes one at once (AIRLOCK_WARM_POOL). A
 * VM that dies while waiting leaves the pool; the VMs of a snapshot nobody took from for
 * WARM_IDLE_MS, or that is drained (its environment rebuilt), are discarded.
 */
export class WarmPool {
  readonly #waiting = new Map<string, SpawnedVm[]>();
  readonly #idle = new Map<string, NodeJS.Timeout>();
  readonly #discard = new Map<SpawnedVm, (vm: SpawnedVm) => Promise<unknown>>();
  readonly #waiters: Array<{ key: string; resolve(): void }> = [];

  count(key: string): number {
    return this.#waiting.get(key)?.length ?? 0;
  }

  take(key: string): SpawnedVm | undefined {
    const vm = this.#waiting.get(key)?.shift();
    if (vm) this.#discard.delete(vm);
    this.#touch(key);
    return vm;
  }

  put(key: string, vm: SpawnedVm, discard: (vm: SpawnedVm) => Promise<unknown>): void {
    const list = this.#waiting.get(key) ?? [];
    list.push(vm);
    this.#waiting.set(key, list);
    this.#discard.set(vm, discard);
    vm.exited.then(() => this.#remove(key, vm));
    this.#touch(key);
    for (const waiter of this.#waiters.filter((w) => w.key === key)) {
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }

  /** Resolves once a VM waits for `key` (at once if one does). */
  whenWarm(key: string): Promise<void> {
    if (this.count(key) > 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ key, resolve }));
  }

  /** VMs waiting, over every snapshot. */
  total(): number {
    let total = 0;
    for (const list of this.#waiting.values()) total += list.length;
    return total;
  }

  /** Discards one waiting VM (the oldest of the fullest snapshot), to make room for a task's. */
  async evictOne(): Promise<void> {
    let fullest: string | undefined;
    for (const [key, list] of this.#waiting) if (list.length > this.count(fullest ?? '')) fullest = key;
    const vm = fullest ? this.#waiting.get(fullest)?.[0] : undefined;
    if (fullest && vm) await this.#remove(fullest, vm);
  }

  /** Discards every waiting VM, of every snapshot. */
  async drainAll(): Promise<void> {
    await Promise.all([...this.#waiting.keys()].map((key) => this.drain(key)));
  }

  /** Discards every VM waiting for `key`. */
  async drain(key: string): Promise<void> {
    clearTimeout(this.#idle.get(key));
    this.#idle.delete(key);
    const list = this.#waiting.get(key) ?? [];
    this.#waiting.delete(key);
    await Promise.all(list.map((vm) => this.#remove(key, vm)));
  }

  async #remove(key: string, vm: SpawnedVm): Promise<void> {
    const list = this.#waiting.get(key);
    if (list?.includes(vm)) list.splice(list.indexOf(vm), 1);
    const discard = this.#discard.get(vm);
    this.#discard.delete(vm);
    await discard?.(vm);
  }

  #touch(key: string): void {
    clearTimeout(this.#idle.get(key));
    this.#idle.set(key, setTimeout(() => void this.drain(key), WARM_IDLE_MS).unref());
  }
}
