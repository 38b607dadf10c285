import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { SandboxError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type ProcessHandle, spawnProcess } from '../process/spawn-process.ts';
import { whenAborted } from '../process/when-aborted.ts';
import { createVmDisks } from './disks.ts';
import { GuestChannel } from './guest-channel.ts';
import type { GuestProcess, GuestReady } from './guest-protocol.ts';
import { MAX_PROXY_CONNECTIONS, openProxyGate, type ProxyGate } from './proxy-gate.ts';
import { qemuArgs } from './qemu-args.ts';
import { qmpExecute } from './qmp.ts';
import type { Sandbox, Vm, VmSpec, VmTeardown } from './sandbox.ts';
import type { VmImage } from './vm-image.ts';
import { currentOwner, killProcessGroup, ownerAlive, processMatches, VmRegistry } from './vm-registry.ts';

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
}

/**
 * The microvm backend: one QEMU process (in its own process group) per VM, killed by the kernel
 * when the process that started it dies.
 */
export class MicroVmSandbox implements Sandbox {
  readonly accel: 'kvm' | 'tcg';
  readonly imageDigest: string;
  readonly agentPackages: Readonly<Record<string, string>>;
  readonly #options: MicroVmOptions;
  readonly #registry: VmRegistry;

  constructor(options: MicroVmOptions) {
    this.#options = options;
    this.accel = options.accel;
    this.imageDigest = options.image.digest;
    this.agentPackages = parseAgentList(options.image.manifest.agents);
    this.#registry = new VmRegistry(options.dataDir);
  }

  async create(spec: VmSpec, signal?: AbortSignal): Promise<Vm> {
    const started = performance.now();
    const vmId = `vm-${spec.taskId.toLowerCase().replace(/[^a-z0-9]/g, '')}-${randomBytes(3).toString('hex')}`;
    const record = {
      vmId,
      taskId: spec.taskId,
      startedAt: new Date().toISOString(),
      owner: currentOwner(),
    };
    const dir = await this.#registry.open(record);
    const files = {
      overlay: path.join(dir, 'root.qcow2'),
      scratch: path.join(dir, 'scratch.qcow2'),
      controlSocket: path.join(dir, 'ctl.sock'),
      qmpSocket: path.join(dir, 'qmp.sock'),
      consoleLog: path.join(dir, 'console.log'),
    };
    let qemu: ProcessHandle | undefined;
    let gate: ProxyGate | undefined;
    try {
      gate = spec.proxySocket
        ? await openProxyGate({
            socketPath: path.join(dir, 'proxy-gate.sock'),
            target: spec.proxySocket,
            maxConnections: spec.maxProxyConnections ?? MAX_PROXY_CONNECTIONS,
          })
        : undefined;
      await createVmDisks({
        rootfs: this.#options.image.rootfs,
        overlay: files.overlay,
        scratch: files.scratch,
        diskMib: spec.diskMib,
        templateDir: path.join(this.#options.dataDir, 'scratch-templates'),
      });
      const args = qemuArgs({
        image: this.#options.image,
        accel: this.accel,
        cpus: spec.cpus,
        memoryMib: spec.memoryMib,
        ...files,
        proxySocket: gate?.socketPath,
        tscKhz: this.#options.tscKhz,
      });
      // No timeout: a VM lives as long as its task, whose runner destroys it. It must never
      // outlive this process (invariant 10): the kernel kills it when this process dies.
      qemu = await spawnProcess(this.#options.qemuBinary ?? 'qemu-system-x86_64', args, {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        detached: true,
        dieWithOwner: true,
      }).catch((cause) => {
        throw new SandboxError('vm_spawn_failed', `QEMU did not start: ${(cause as Error).message}`, {
          cause,
          hint: 'is qemu-system-x86 installed?',
        });
      });
      const pid = qemu.pid;
      await this.#registry.setPid(record, pid);
      const exited = qemu.exited.then(
        (r) => `QEMU exited (${r.exitCode ?? r.signal}): ${r.stderr.trim().slice(-500)}`,
      );
      const socket = await connectControl(
        files.controlSocket,
        exited,
        this.#options.bootTimeoutMs ?? 120_000,
        signal,
      );
      const channel = new GuestChannel(socket, spec.outputLimitBytes, spec.execAuditRate);
      const ready = await Promise.race([
        channel.ready,
        exited.then((why) => {
          throw new SandboxError('vm_boot_failed', `the VM died while booting: ${why}`);
        }),
        timeout(this.#options.bootTimeoutMs ?? 120_000, 'the VM did not become ready'),
        whenAborted(signal),
      ]);
      const failed = failedGuestSetup(ready);
      if (failed) throw new SandboxError('vm_boot_failed', `the guest's set-up failed: ${failed}`);
      const bootMs = performance.now() - started;
      this.#options.log.info(
        { vmId, taskId: spec.taskId, bootMs: Math.round(bootMs), guest: ready },
        'VM ready',
      );
      return new MicroVm({
        id: vmId,
        taskId: spec.taskId,
        accel: this.accel,
        bootMs,
        channel,
        qemu,
        exited,
        registry: this.#registry,
        files,
        gate,
      });
    } catch (error) {
      qemu?.kill();
      await qemu?.exited;
      await gate?.close();
      const consoleLog = await readFile(files.consoleLog, 'utf8').catch(() => '');
      await this.#registry.remove(vmId);
      const failure =
        error instanceof SandboxError
          ? error
          : new SandboxError('vm_boot_failed', `could not boot the VM: ${(error as Error).message}`, {
              cause: error,
            });
      if (consoleLog.trim()) {
        failure.message += `\nguest console (last lines):\n${consoleLog.trim().split('\n').slice(-15).join('\n')}`;
      }
      throw failure;
    }
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

/** The host-side files of one VM, all inside its registry directory and deleted with it. */
export interface MicroVmFiles {
  overlay: string;
  scratch: string;
  controlSocket: string;
  qmpSocket: string;
  consoleLog: string;
}

export class MicroVm implements Vm {
  readonly id: string;
  readonly taskId: string;
  readonly accel: 'kvm' | 'tcg';
  readonly bootMs: number;
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
    bootMs: number;
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
    this.bootMs = parts.bootMs;
    this.#channel = parts.channel;
    this.#qemu = parts.qemu;
    this.#registry = parts.registry;
    this.#gate = parts.gate;
    this.exited = new Promise((resolve) => {
      parts.exited.then((why) => resolve(this.#limitHit ? 'output limit exceeded' : why));
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

function timeout(ms: number, message: string): Promise<never> {
  return new Promise((_, reject) =>
    setTimeout(() => reject(new SandboxError('vm_boot_failed', message)), ms).unref(),
  );
}
