import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { errorMessage, SandboxError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { runProcess } from '../process/run-process.ts';
import { spawnProcess } from '../process/spawn-process.ts';
import { whenAborted } from '../process/when-aborted.ts';
import { createCloneDisks, createVmDisks } from './disks.ts';
import { GuestChannel } from './guest-channel.ts';
import type { GuestReady } from './guest-protocol.ts';
import { MicroVm, type MicroVmFiles } from './micro-vm.ts';
import { MAX_PROXY_CONNECTIONS, openProxyGate } from './proxy-gate.ts';
import { qemuArgs } from './qemu-args.ts';
import { QmpSession, qmpExecute } from './qmp.ts';
import type { Sandbox, Vm, VmShape, VmSnapshot, VmSpec } from './sandbox.ts';
import type { VmImage } from './vm-image.ts';
import { type VmPlace, VmPlaces } from './vm-places.ts';
import { currentOwner, killProcessGroup, ownerAlive, processMatches, VmRegistry } from './vm-registry.ts';
import {
  copyMemory,
  loadVmState,
  readSnapshot,
  SNAPSHOT_FILES,
  type SnapshotHost,
  sealSnapshot,
  shapeOf,
  snapshotKey,
} from './vm-snapshot.ts';
import { type SpawnedVm, WarmPool } from './warm-pool.ts';

/** Settings for {@link MicroVmSandbox}. */
export interface MicroVmOptions {
  image: VmImage;
  accel: 'kvm' | 'tcg';
  dataDir: string;
  log: Logger;
  qemuBinary?: string;
  tscKhz?: number;
  /** How long a boot may take before it counts as failed. */
  bootTimeoutMs?: number;
  /**
   * Where base snapshots are kept: one per VM shape, a cold boot of the image frozen once it is
   * ready, from which every VM of that shape is restored. Unset: VMs boot cold unless given a
   * snapshot.
   */
  snapshotDir?: string;
  /** Restored, paused VMs kept ready per snapshot in use (AIRLOCK_WARM_POOL); none when unset. */
  warmPool?: number;
  /**
   * VMs this sandbox runs at once (AIRLOCK_MAX_CONCURRENT_TASKS): tasks', environment builds', the
   * one booted to make a base snapshot and warm ones. A launch past it evicts a warm VM or waits,
   * in arrival order, for a VM to end; the warm pool fills only below it. No limit when unset.
   */
  maxVms?: number;
}

/** How long a failed base snapshot keeps its shape on cold boots before it is tried again. */
const BASE_RETRY_MS = 10 * 60_000;

type Launch = { kind: 'cold' } | { kind: 'restore'; snapshot: VmSnapshot };

/**
 * The microvm backend: one QEMU process (in its own process group) per VM, killed by the kernel
 * when the process that started it dies. A VM is booted cold from the image or restored from a
 * snapshot: copy-on-write disks over the frozen ones, RAM mapped privately from the frozen file,
 * device state loaded over QMP, then made unique (entropy, clock, identity) before it is used.
 */
export class MicroVmSandbox implements Sandbox {
  readonly accel: 'kvm' | 'tcg';
  readonly imageDigest: string;
  readonly agentPackages: Readonly<Record<string, string>>;
  /** The Debian release of the image (its packages come from that release's archive). */
  readonly debianRelease: string;
  readonly #options: MicroVmOptions;
  readonly #registry: VmRegistry;
  readonly #bases = new Map<string, Promise<VmSnapshot | undefined>>();
  readonly #pool = new WarmPool();
  readonly #places: VmPlaces;
  readonly #filling = new Map<string, number>();
  /** Warm VMs being restored and warmed up, to be waited for on close. */
  readonly #fills = new Set<Promise<void>>();
  #host: Promise<SnapshotHost> | undefined;
  #closed = false;

  constructor(options: MicroVmOptions) {
    this.#options = options;
    this.accel = options.accel;
    this.imageDigest = options.image.digest;
    this.agentPackages = parseAgentList(options.image.manifest.agents);
    this.debianRelease = options.image.manifest.debian?.suite ?? 'bookworm';
    this.#registry = new VmRegistry(options.dataDir);
    this.#places = new VmPlaces(options.maxVms ?? Number.POSITIVE_INFINITY);
  }

  /** The host's VM limit, the places held now (warm VMs included) and the launches waiting for one. */
  get vmPlaces(): { limit: number; held: number; waiting: number } {
    return { limit: this.#places.limit, held: this.#places.held, waiting: this.#places.waiting };
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<Vm> {
    // The base snapshot is shared by every VM of its shape: a caller that stops waiting for it
    // leaves it being made for the others.
    const from = spec.from ?? (await Promise.race([this.#baseSnapshot(spec), waitAborted(signal, spec)]));
    if (!from || from === 'cold') return this.#launch(spec, { kind: 'cold' }, signal);
    if (!sameShape(from.shape, spec))
      throw new SandboxError(
        'snapshot_mismatch',
        `the snapshot at ${from.dir} is for ${describeShape(from.shape)}, the VM asks for ${describeShape(spec)}`,
      );
    return this.#launch(spec, { kind: 'restore', snapshot: from }, signal);
  }

  async freeze(vm: Vm, dir: string): Promise<VmSnapshot> {
    if (!(vm instanceof MicroVm)) throw new SandboxError('snapshot_failed', 'not a VM of this sandbox');
    vm.checkFreezable();
    const host = await this.#snapshotHost();
    const partial = `${dir}.partial-${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(partial, { recursive: true, mode: 0o700 });
      await vm.freezeInto(partial);
      const snapshot = await sealSnapshot(partial, dir, host, vm.shape);
      this.#options.log.info({ vmId: vm.id, taskId: vm.taskId, dir }, 'VM frozen into a snapshot');
      return snapshot;
    } catch (error) {
      await vm.destroy();
      throw error instanceof SandboxError
        ? error
        : new SandboxError('snapshot_failed', `could not freeze VM ${vm.id}: ${(error as Error).message}`, {
            cause: error,
          });
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }

  async openSnapshot(dir: string): Promise<VmSnapshot | undefined> {
    return readSnapshot(dir, await this.#snapshotHost());
  }

  /** Warm VMs waiting for `snapshot` now. */
  warmCount(snapshot: VmSnapshot): number {
    return this.#pool.count(snapshot.key);
  }

  /** Resolves once a warm VM waits for `snapshot`. */
  whenWarm(snapshot: VmSnapshot): Promise<void> {
    return this.#pool.whenWarm(snapshot.key);
  }

  async drainWarmPool(snapshot: VmSnapshot): Promise<void> {
    await this.#pool.drain(snapshot.key);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([this.#pool.drainAll(), ...this.#fills]);
  }

  /**
   * Reaps the VMs whose owner process is gone: a VM started by a process that is still running
   * (another airlock on the same data directory) is left alone.
   */
  async reapOrphans(): Promise<string[]> {
    const reaped: string[] = [];
    for (const vm of this.#registry.list()) {
      if (ownerAlive(vm.owner)) continue;
      if (vm.pid && processMatches(vm.pid, vm.dir)) killProcessGroup(vm.pid);
      await this.#registry.remove(vm.vmId);
      reaped.push(vm.taskId);
      this.#options.log.warn(
        { vmId: vm.vmId, taskId: vm.taskId, pid: vm.pid },
        'reaped a VM left by a previous process',
      );
    }
    return reaped;
  }

  /** What every snapshot of this sandbox is keyed on; the QEMU version is asked once. */
  #snapshotHost(): Promise<SnapshotHost> {
    this.#host ??= (async () => {
      const { stdout } = await runProcess(this.#options.qemuBinary ?? 'qemu-system-x86_64', ['--version'], {
        timeoutMs: 10_000,
      });
      return {
        imageDigest: this.imageDigest,
        accel: this.accel,
        qemu: stdout.split('\n')[0]?.trim() ?? '',
        tscKhz: this.#options.tscKhz ?? null,
      };
    })();
    return this.#host;
  }

  /**
   * The base snapshot of a shape, made on first use by a cold boot frozen once ready; undefined
   * (cold boots) when the sandbox keeps none or making it failed (tried again later).
   */
  async #baseSnapshot(spec: VmShape): Promise<VmSnapshot | undefined> {
    const root = this.#options.snapshotDir;
    if (!root) return undefined;
    const host = await this.#snapshotHost();
    const shape = shapeOf(spec);
    const key = snapshotKey(host, shape);
    let made = this.#bases.get(key);
    if (!made) {
      made = this.#makeBase(root, host, shape, key);
      this.#bases.set(key, made);
      made.then((snapshot) => {
        if (!snapshot) setTimeout(() => this.#bases.delete(key), BASE_RETRY_MS).unref();
      });
    }
    return made;
  }

  async #makeBase(
    root: string,
    host: SnapshotHost,
    shape: VmShape,
    key: string,
  ): Promise<VmSnapshot | undefined> {
    const dir = path.join(root, baseDirName(key));
    const existing = await readSnapshot(dir, host);
    if (existing) return existing;
    await removeStaleBases(root, host);
    const started = performance.now();
    try {
      const vm = await this.#launch(
        { taskId: 'base-snapshot', ...shape, outputLimitBytes: 1024 * 1024, freezable: true },
        { kind: 'cold' },
      );
      const snapshot = await this.freeze(vm, dir);
      this.#options.log.info(
        { dir, shape, ms: Math.round(performance.now() - started) },
        'base snapshot made: VMs of this shape are restored from it',
      );
      return snapshot;
    } catch (error) {
      this.#options.log.warn(
        { dir, shape, err: error },
        'could not make a base snapshot: VMs of this shape boot cold for now',
      );
      return undefined;
    }
  }

  /** Boots or restores a VM for `spec`; a restore takes a paused VM from the warm pool if one waits. */
  async #launch(spec: VmSpec, how: Launch, signal?: AbortSignal): Promise<MicroVm> {
    const pooled = how.kind === 'restore' && !spec.freezable ? this.#pool.take(how.snapshot.key) : undefined;
    // A warm VM already holds its place; any other VM takes one first, waiting if the host is full.
    const place = pooled?.place ?? (await this.#takePlace(spec, signal));
    const started = performance.now();
    const vm = pooled ?? (await this.#spawn(spec, how, place, signal));
    try {
      if (pooled) await this.#registry.update(vm.record, { taskId: spec.taskId });
      const channel = vm.channel ?? new GuestChannel(vm.socket, spec.outputLimitBytes, spec.execAuditRate);
      vm.channel?.startTask(spec.outputLimitBytes, spec.execAuditRate);
      const bootTimeoutMs = this.#options.bootTimeoutMs ?? 120_000;
      const ready = how.kind === 'cold' ? coldReady(channel) : this.#wake(vm, channel, how.snapshot, spec);
      const guest = await Promise.race([
        ready,
        vm.exited.then((why) => {
          throw new SandboxError(
            'vm_boot_failed',
            `the VM died while ${how.kind === 'cold' ? 'booting' : 'restoring'}: ${why}`,
          );
        }),
        timeout(bootTimeoutMs, `the VM did not become ready within ${bootTimeoutMs} ms`),
        whenAborted(signal),
      ]);
      const bootMs = performance.now() - started;
      this.#options.log.info(
        {
          vmId: vm.vmId,
          taskId: spec.taskId,
          start: how.kind === 'cold' ? 'cold' : pooled ? 'warm pool' : 'restored',
          bootMs: Math.round(bootMs),
          ...(place.queuedMs !== undefined ? { queuedMs: Math.round(place.queuedMs) } : {}),
          ...(guest ? { guest } : { snapshot: how.kind === 'restore' ? how.snapshot.dir : undefined }),
        },
        'VM ready',
      );
      if (how.kind === 'restore' && !spec.freezable) this.#refill(how.snapshot);
      return new MicroVm({
        id: vm.vmId,
        taskId: spec.taskId,
        accel: this.accel,
        start: how.kind === 'cold' ? 'cold' : 'restored',
        shape: { cpus: spec.cpus, memoryMib: spec.memoryMib, diskMib: spec.diskMib },
        bootMs,
        place,
        channel,
        qemu: vm.qemu,
        exited: vm.exited,
        registry: this.#registry,
        files: vm.files,
        gate: vm.gate,
      });
    } catch (error) {
      throw await this.#discard(vm, error);
    }
  }

  /**
   * A place under the host's VM limit for `spec`'s VM. When there is none, the launch queues and
   * one warm VM goes (its place passes to the first launch waiting); with none to evict, the
   * launch waits for a running VM to end.
   */
  #takePlace(spec: VmSpec, signal?: AbortSignal): Promise<VmPlace> {
    return this.#places.take({
      signal,
      what: `the VM of ${spec.taskId}`,
      onQueued: () => {
        const { limit, held, waiting } = this.#places;
        const warm = this.#pool.total();
        this.#options.log.info(
          { taskId: spec.taskId, limit, running: held, waiting, warm },
          warm > 0
            ? 'host at its VM limit: a warm VM makes room'
            : 'host at its VM limit: the VM waits for a running one to end',
        );
        if (warm > 0)
          this.#pool
            .evictOne()
            .catch((error) => this.#options.log.warn({ err: error }, 'could not evict a warm VM'));
      },
    });
  }

  /**
   * Starts QEMU for a VM, its disks made and its control channel connected; a restore also has its
   * frozen device state loaded, and waits paused (how the warm pool keeps it). The VM's place is
   * released if it fails.
   */
  async #spawn(spec: VmSpec, how: Launch, place: VmPlace, signal?: AbortSignal): Promise<SpawnedVm> {
    const vmId = `vm-${spec.taskId.toLowerCase().replace(/[^a-z0-9]/g, '')}-${randomBytes(3).toString('hex')}`;
    const record = {
      vmId,
      taskId: spec.taskId,
      startedAt: new Date().toISOString(),
      owner: currentOwner(),
    };
    const dir = this.#registry.dir(vmId);
    const files: MicroVmFiles = {
      overlay: path.join(dir, 'root.qcow2'),
      scratch: path.join(dir, 'scratch.qcow2'),
      controlSocket: path.join(dir, 'ctl.sock'),
      qmpSocket: path.join(dir, 'qmp.sock'),
      consoleLog: path.join(dir, 'console.log'),
      memory: spec.freezable ? path.join(dir, 'memory.ram') : undefined,
    };
    const partial: Partial<SpawnedVm> & Pick<SpawnedVm, 'vmId' | 'record' | 'files' | 'place'> = {
      vmId,
      record,
      files,
      place,
    };
    try {
      await this.#registry.open(record);
      // A restored VM always gets a gate, so that one kept in the warm pool can be given its
      // task's proxy when it is taken.
      partial.gate =
        spec.proxySocket || how.kind === 'restore'
          ? await openProxyGate({
              socketPath: path.join(dir, 'proxy-gate.sock'),
              target: spec.proxySocket,
              maxConnections: spec.maxProxyConnections ?? MAX_PROXY_CONNECTIONS,
            })
          : undefined;
      const memoryFile = await this.#prepareDisks(spec, how, files);
      const args = qemuArgs({
        image: this.#options.image,
        accel: this.accel,
        cpus: spec.cpus,
        memoryMib: spec.memoryMib,
        ...files,
        proxySocket: partial.gate?.socketPath,
        tscKhz: this.#options.tscKhz,
        memoryFile,
        incoming: how.kind === 'restore',
      });
      // No timeout: a VM lives as long as its task, whose runner destroys it. It must never
      // outlive this process (invariant 10): the kernel kills it when this process dies.
      const qemu = await spawnProcess(this.#options.qemuBinary ?? 'qemu-system-x86_64', args, {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        detached: true,
        dieWithOwner: true,
      }).catch((cause) => {
        throw new SandboxError('vm_spawn_failed', `QEMU did not start: ${(cause as Error).message}`, {
          cause,
          hint: 'is qemu-system-x86 installed?',
        });
      });
      partial.qemu = qemu;
      await this.#registry.setPid(record, qemu.pid);
      const exited = qemu.exited.then(
        (r) => `QEMU exited (${r.exitCode ?? r.signal}): ${r.stderr.trim().slice(-500)}`,
      );
      partial.exited = exited;
      // A restored guest's control port must find its host connected when its state is loaded,
      // or the guest agent reads end-of-file: connect first, then load.
      partial.socket = await connectControl(
        files.controlSocket,
        exited,
        this.#options.bootTimeoutMs ?? 120_000,
        signal,
      );
      if (how.kind === 'restore') {
        const qmp = await QmpSession.open(files.qmpSocket);
        try {
          await Promise.race([
            loadVmState(qmp, path.join(how.snapshot.dir, SNAPSHOT_FILES.state)),
            exited.then((why) => {
              throw new SandboxError('vm_boot_failed', `the VM died while loading its snapshot: ${why}`);
            }),
          ]);
        } finally {
          qmp.close();
        }
      }
      return partial as SpawnedVm;
    } catch (error) {
      throw await this.#discard(partial, error);
    }
  }

  /**
   * Runs a restored, paused VM and makes it unique before it is used (its set-up was checked when
   * the frozen VM booted; the exec-audit lock holds until power-off, so it is still locked).
   */
  async #wake(vm: SpawnedVm, channel: GuestChannel, snapshot: VmSnapshot, spec: VmSpec): Promise<undefined> {
    if (spec.proxySocket) vm.gate?.attach(spec.proxySocket);
    await qmpExecute(vm.files.qmpSocket, 'cont');
    await channel.resume({ hostname: `airlock-${vm.vmId.slice(-6)}` });
    this.#options.log.debug({ vmId: vm.vmId, snapshot: snapshot.dir }, 'restored VM made unique');
    return undefined;
  }

  /** Stops and deletes a VM that never became ready; returns the error to throw, with the guest's console. */
  async #discard(
    vm: Partial<SpawnedVm> & Pick<SpawnedVm, 'vmId' | 'files' | 'place'>,
    error: unknown,
  ): Promise<Error> {
    vm.socket?.destroy();
    vm.qemu?.kill();
    await vm.qemu?.exited;
    // QEMU is gone: its place is free, whatever the clean-up below does.
    vm.place.release();
    await vm.gate?.close();
    const consoleLog = await readFile(vm.files.consoleLog, 'utf8').catch(() => '');
    await this.#registry.remove(vm.vmId);
    const failure =
      error instanceof SandboxError
        ? error
        : new SandboxError('vm_boot_failed', `could not start the VM: ${(error as Error).message}`, {
            cause: error,
          });
    if (consoleLog.trim()) {
      failure.message += `\nguest console (last lines):\n${consoleLog.trim().split('\n').slice(-15).join('\n')}`;
    }
    return failure;
  }

  /**
   * Tops up the warm pool of a snapshot in the background: paused VMs restored ahead of need,
   * never more than the pool's size, and only into places free under the host's VM limit that no
   * launch is waiting for.
   */
  #refill(snapshot: VmSnapshot): void {
    const size = this.#options.warmPool ?? 0;
    if (size <= 0 || this.#closed) return;
    const wanted = size - this.#pool.count(snapshot.key) - (this.#filling.get(snapshot.key) ?? 0);
    for (let i = 0; i < wanted; i++) {
      const place = this.#places.tryTake();
      if (!place) return;
      this.#filling.set(snapshot.key, (this.#filling.get(snapshot.key) ?? 0) + 1);
      const fill = this.#spawn(
        { taskId: 'warm-pool', ...snapshot.shape, outputLimitBytes: 0 },
        { kind: 'restore', snapshot },
        place,
      )
        .then((vm) => this.#warmUp(vm))
        .then(
          async (vm) => {
            const discard = (gone: SpawnedVm) => this.#discard(gone, new Error('warm pool drained'));
            // Closed while it warmed up, nobody will take it; a launch waiting for a place
            // (another snapshot's, a build's) needs its place more than the pool does.
            if (this.#closed || this.#places.waiting > 0) await discard(vm);
            else this.#pool.put(snapshot.key, vm, discard);
          },
          (error) =>
            this.#options.log.warn({ snapshot: snapshot.dir, err: error }, 'could not fill the warm pool'),
        )
        .finally(() => {
          this.#filling.set(snapshot.key, (this.#filling.get(snapshot.key) ?? 1) - 1);
          this.#fills.delete(fill);
        });
      this.#fills.add(fill);
    }
  }

  /**
   * Runs a restored VM once and pauses it again: made unique, one command run as the agent user.
   * Under TCG a restored VM translates the guest's code afresh as it first runs it; a warm VM has
   * done that before its task takes it, so the task only pays `cont` and a fresh reseed.
   */
  async #warmUp(vm: SpawnedVm): Promise<SpawnedVm> {
    try {
      const channel = new GuestChannel(vm.socket, 1024 * 1024);
      vm.channel = channel;
      await qmpExecute(vm.files.qmpSocket, 'cont');
      await channel.resume({ hostname: `airlock-${vm.vmId.slice(-6)}` });
      await channel.exec({ argv: ['/bin/true'], uid: 1000 });
      await channel.syncAudit();
      await qmpExecute(vm.files.qmpSocket, 'stop');
      return vm;
    } catch (error) {
      throw await this.#discard(vm, error);
    }
  }

  /** Makes the VM's disks (and its RAM file) for a cold boot or a restore; returns how RAM is mapped. */
  async #prepareDisks(spec: VmSpec, how: Launch, files: MicroVmFiles) {
    if (how.kind === 'cold') {
      await createVmDisks({
        rootfs: this.#options.image.rootfs,
        overlay: files.overlay,
        scratch: files.scratch,
        diskMib: spec.diskMib,
        templateDir: path.join(this.#options.dataDir, 'scratch-templates'),
      });
      return files.memory ? { path: files.memory, mode: 'shared' as const } : undefined;
    }
    const frozen = how.snapshot.dir;
    await createCloneDisks({
      frozenRoot: path.join(frozen, SNAPSHOT_FILES.root),
      frozenScratch: path.join(frozen, SNAPSHOT_FILES.scratch),
      overlay: files.overlay,
      scratch: files.scratch,
    });
    // A VM that may itself be frozen needs its RAM in a file of its own: a copy of the frozen one.
    if (files.memory) {
      await copyMemory(path.join(frozen, SNAPSHOT_FILES.memory), files.memory);
      return { path: files.memory, mode: 'shared' as const };
    }
    return { path: path.join(frozen, SNAPSHOT_FILES.memory), mode: 'private' as const };
  }
}

/** A cold boot is ready when the guest agent reports its set-up, and all of it worked. */
async function coldReady(channel: GuestChannel): Promise<GuestReady> {
  const ready = await channel.ready;
  const failed = failedGuestSetup(ready);
  if (failed) throw new SandboxError('vm_boot_failed', `the guest's set-up failed: ${failed}`);
  return ready;
}

function baseDirName(key: string): string {
  return `base-${key.slice(0, 16)}`;
}

/**
 * Deletes base snapshots made for another image, QEMU or host, ones under a name their key does not
 * give (made per task by airlock before 2026-12, never found again), and ones a crash left half-made.
 */
export async function removeStaleBases(root: string, host: SnapshotHost): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith('base-')) continue;
    const dir = path.join(root, name);
    const stale = name.includes('.partial-')
      ? Date.now() - (await statMtime(dir)) > 3600_000
      : (await readSnapshot(dir, host))?.key.slice(0, 16) !== name.slice('base-'.length);
    if (stale) await rm(dir, { recursive: true, force: true });
  }
}

async function statMtime(file: string): Promise<number> {
  return stat(file).then(
    (s) => s.mtimeMs,
    () => 0,
  );
}

function sameShape(a: VmShape, b: VmShape): boolean {
  return a.cpus === b.cpus && a.memoryMib === b.memoryMib && a.diskMib === b.diskMib;
}

function describeShape(shape: VmShape): string {
  return `${shape.cpus} CPU, ${shape.memoryMib} MiB, ${shape.diskMib} MiB disk`;
}

/** `"@openai/codex@0.169.0 opencode-ai@1.18.33"` (the manifest's `agents`) as package → version. */
export function parseAgentList(list: unknown): Record<string, string> {
  const packages: Record<string, string> = {};
  if (typeof list !== 'string') return packages;
  for (const spec of list.split(/\s+/).filter(Boolean)) {
    const at = spec.lastIndexOf('@');
    if (at > 0) packages[spec.slice(0, at)] = spec.slice(at + 1);
  }
  return packages;
}

/**
 * What went wrong in the guest's boot-time set-up, from its ready message; undefined when all of
 * it worked. A VM whose exec audit is not locked, or that has no network or workspace, is not used.
 */
export function failedGuestSetup(ready: GuestReady): string | undefined {
  const { setup } = ready;
  if ('timedOut' in setup) return 'it did not finish within 30 s';
  const failures: string[] = [];
  if (setup.audit !== 0)
    failures.push(`the exec-audit rules could not be loaded and locked (audit=${setup.audit})`);
  if (!setup.auditLocked) failures.push('the kernel does not report the exec-audit rules locked');
  if (setup.network !== 0) failures.push(`the network could not be configured (network=${setup.network})`);
  if (setup.scratch !== 0) failures.push(`the scratch disk could not be mounted (scratch=${setup.scratch})`);
  return failures.length ? failures.join('; ') : undefined;
}

async function connectControl(
  file: string,
  exited: Promise<string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  let gone: string | undefined;
  exited.then((why) => {
    gone = why;
  });
  for (;;) {
    if (gone)
      throw new SandboxError('vm_boot_failed', `the VM died before its control channel opened: ${gone}`);
    if (signal?.aborted) throw signal.reason;
    if (Date.now() > deadline)
      throw new SandboxError('vm_boot_failed', 'the VM control channel did not open');
    if (existsSync(file)) {
      const socket = await new Promise<Socket | undefined>((resolve) => {
        const s = connect(file);
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(undefined));
      });
      if (socket) return socket;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Rejects once `signal` aborts, with a SandboxError saying what `spec`'s VM was waiting for. */
function waitAborted(signal: AbortSignal | undefined, spec: VmSpec): Promise<never> {
  return whenAborted(signal).catch((reason: unknown) => {
    throw new SandboxError(
      'vm_wait_aborted',
      `the VM of ${spec.taskId} was not started: stopped (${errorMessage(reason)}) while it waited for the base snapshot of its shape`,
      { cause: reason },
    );
  });
}

function timeout(ms: number, message: string): Promise<never> {
  return new Promise((_, reject) =>
    setTimeout(() => reject(new SandboxError('vm_boot_failed', message)), ms).unref(),
  );
}
