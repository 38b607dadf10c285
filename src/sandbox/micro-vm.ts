import { stat } from 'node:fs/promises';
import path from 'node:path';
import { SandboxError } from '../errors.ts';
import type { ProcessHandle } from '../process/spawn-process.ts';
import { detachBacking } from './disks.ts';
import type { GuestChannel } from './guest-channel.ts';
import type { GuestProcess } from './guest-protocol.ts';
import type { ProxyGate } from './proxy-gate.ts';
import { QmpSession, qmpExecute } from './qmp.ts';
import type { Vm, VmShape, VmTeardown } from './sandbox.ts';
import type { VmPlace } from './vm-places.ts';
import { processMatches, type VmRegistry } from './vm-registry.ts';
import { moveInto, SNAPSHOT_FILES, saveVmState } from './vm-snapshot.ts';

/** The host-side files of one VM, all inside its registry directory and deleted with it. */
export interface MicroVmFiles {
  overlay: string;
  scratch: string;
  controlSocket: string;
  qmpSocket: string;
  consoleLog: string;
  /** The VM's RAM, when it is kept in a file of its own (a freezable VM). */
  memory?: string | undefined;
}

/** One running QEMU microVM and the host end of its control channel. */
export class MicroVm implements Vm {
  readonly id: string;
  readonly taskId: string;
  readonly accel: 'kvm' | 'tcg';
  readonly start: 'cold' | 'restored';
  readonly shape: VmShape;
  readonly bootMs: number;
  readonly queuedMs: number | undefined;
  readonly exited: Promise<string>;
  readonly files: MicroVmFiles;
  readonly #channel: GuestChannel;
  readonly #qemu: ProcessHandle;
  readonly #registry: VmRegistry;
  readonly #gate: ProxyGate | undefined;
  #destroyed: Promise<VmTeardown> | undefined;
  #limitHit = false;

  constructor(parts: {
    id: string;
    taskId: string;
    accel: 'kvm' | 'tcg';
    start: 'cold' | 'restored';
    shape: VmShape;
    bootMs: number;
    /** Its place under the host's VM limit: given back as soon as QEMU is gone. */
    place: VmPlace;
    channel: GuestChannel;
    qemu: ProcessHandle;
    exited: Promise<string>;
    registry: VmRegistry;
    files: MicroVmFiles;
    gate?: ProxyGate | undefined;
  }) {
    this.files = parts.files;
    this.id = parts.id;
    this.taskId = parts.taskId;
    this.accel = parts.accel;
    this.start = parts.start;
    this.shape = parts.shape;
    this.bootMs = parts.bootMs;
    this.queuedMs = parts.place.queuedMs;
    this.#channel = parts.channel;
    this.#qemu = parts.qemu;
    this.#registry = parts.registry;
    this.#gate = parts.gate;
    this.exited = new Promise((resolve) => {
      parts.exited.then((why) => {
        // Stopped (destroyed, frozen, crashed): the next launch waiting may boot.
        parts.place.release();
        resolve(this.#limitHit ? 'output limit exceeded' : why);
      });
      this.#channel.onOutputLimit = () => {
        this.#limitHit = true;
        this.#qemu.kill();
        this.#channel.close(
          new SandboxError('limit_exceeded', 'the task exceeded its output limit (limits.output_kib)'),
        );
      };
    });
  }

  exec: Vm['exec'] = (request, onOutput, signal) => this.#channel.exec(request, onOutput, signal);
  writeFile: Vm['writeFile'] = (file, content, options) => this.#channel.writeFile(file, content, options);
  readFile: Vm['readFile'] = (file) => this.#channel.readFile(file);
  onExecAudit: Vm['onExecAudit'] = (listener) => this.#channel.onExecAudit(listener);
  onMalformed: Vm['onMalformed'] = (listener) => this.#channel.onMalformed(listener);
  onExecAuditLoss: Vm['onExecAuditLoss'] = (listener) => this.#channel.onExecAuditLoss(listener);

  /** Guest connections the proxy gate refused because the VM held its maximum. */
  get refusedProxyConnections(): number {
    return this.#gate?.refused ?? 0;
  }

  /** The VMM's process id on the host (for measuring its memory). */
  get pid(): number {
    return this.#qemu.pid;
  }

  async killUserProcesses(uid: number): Promise<GuestProcess[]> {
    const { processes, survivors } = await this.#channel.killUserProcesses(uid);
    if (survivors.length) {
      throw new SandboxError(
        'guest_error',
        `processes of guest user ${uid} survived SIGKILL (pids ${survivors.join(', ')})`,
        { hint: 'a process stuck in the kernel: the VM is destroyed with the task' },
      );
    }
    return processes;
  }

  async syncAudit(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SandboxError('guest_error', `exec audit did not catch up within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const stopped = this.exited.then((why) => {
        throw new SandboxError('guest_error', `the VM stopped before its exec audit caught up: ${why}`);
      });
      await Promise.race([this.#channel.syncAudit(), timeout, stopped]);
    } finally {
      clearTimeout(timer);
      // Whatever was dropped over the rate is counted on the record before the VM goes.
      this.#channel.flushExecAuditDrops();
    }
  }

  /**
   * Writes the guest's RAM to `file` (ELF core, through QEMU's monitor) for incident review and for
   * the test that looks for credentials in guest memory.
   */
  async dumpGuestMemory(file: string): Promise<void> {
    await qmpExecute(this.files.qmpSocket, 'dump-guest-memory', { paging: false, protocol: `file:${file}` });
  }

  /** Throws, leaving the VM as it is, unless it can be frozen now. */
  checkFreezable(): void {
    if (!this.files.memory)
      throw new SandboxError('snapshot_failed', `VM ${this.id} was not created freezable`, {
        hint: 'create the VM with `freezable: true`',
      });
    if (!this.#channel.idle)
      throw new SandboxError('snapshot_failed', `VM ${this.id} is still running a request: freeze it idle`);
    if (this.#destroyed) throw new SandboxError('snapshot_failed', `VM ${this.id} is already destroyed`);
  }

  /**
   * Stops the VM and moves what a restore needs into `dir`: its RAM file, its device state and its
   * two disks (flushed and released by QEMU once the state is saved). The VM is then destroyed.
   */
  async freezeInto(dir: string): Promise<void> {
    this.checkFreezable();
    const memory = this.files.memory as string;
    // Exec records still in the guest's kernel log belong to this VM's record, not to every VM
    // restored from the snapshot: drain them first.
    await this.syncAudit(60_000);
    const qmp = await QmpSession.open(this.files.qmpSocket);
    try {
      await saveVmState(qmp, path.join(dir, SNAPSHOT_FILES.state));
    } finally {
      qmp.close();
    }
    // QEMU must be gone before its files are taken: it holds them open until it exits.
    this.#channel.close(new SandboxError('vm_destroyed', 'the VM was frozen into a snapshot'));
    this.#qemu.kill();
    await this.#qemu.exited;
    await moveInto(memory, path.join(dir, SNAPSHOT_FILES.memory));
    await moveInto(this.files.overlay, path.join(dir, SNAPSHOT_FILES.root));
    await moveInto(this.files.scratch, path.join(dir, SNAPSHOT_FILES.scratch));
    await detachBacking(path.join(dir, SNAPSHOT_FILES.scratch));
    await this.destroy();
  }

  destroy(): Promise<VmTeardown> {
    this.#destroyed ??= (async () => {
      this.#channel.close(new SandboxError('vm_destroyed', 'the VM was destroyed'));
      this.#qemu.kill();
      await this.#qemu.exited;
      await this.#gate?.close();
      const dir = path.dirname(this.files.overlay);
      await this.#registry.remove(this.id);
      // What the audit record says is what was checked here, after the fact.
      return {
        processGone: !processMatches(this.#qemu.pid, dir),
        overlayDeleted: await stat(this.files.overlay).then(
          () => false,
          (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
        ),
      };
    })();
    return this.#destroyed;
  }
}
