import type { ExecAuditLoss, ExecAuditRecord } from './exec-audit.ts';
import type { ExecAuditRate } from './exec-audit-limiter.ts';
import type { GuestProcess } from './guest-protocol.ts';

/** A VM's size: a snapshot restores only into a VM of exactly its shape. */
export interface VmShape {
  cpus: number;
  memoryMib: number;
  diskMib: number;
}

/**
 * A VM frozen on disk (its disks' content, its RAM, its device state), with its guest agent idle:
 * restorable many times at once, each VM copy-on-write over the same files.
 */
export interface VmSnapshot {
  /** The directory holding the frozen files; read-only once made. */
  readonly dir: string;
  /** sha256 over what a restore must match: image, accelerator, QEMU, host TSC, shape. */
  readonly key: string;
  readonly shape: VmShape;
  readonly createdAt: string;
}

/** Resources and wiring for one task's VM. */
export interface VmSpec extends VmShape {
  taskId: string;
  /** Unix socket of this task's credential-proxy listener, forwarded to 10.0.2.100:80 in the guest. */
  proxySocket?: string;
  /** Cap on output streamed from the guest, in bytes; exceeding it ends the task. */
  outputLimitBytes: number;
  /** Exec records per second kept in the task's record (DEFAULT_EXEC_AUDIT_RATE when unset). */
  execAuditRate?: ExecAuditRate;
  /** Connections the guest may hold open to its proxy at once (MAX_PROXY_CONNECTIONS when unset). */
  maxProxyConnections?: number;
  /**
   * Where the VM comes from: a snapshot to restore, or `cold` for a boot from the image. Unset: the
   * base snapshot of the VM's shape (made on first use), or a cold boot if the sandbox keeps none.
   */
  from?: VmSnapshot | 'cold';
  /** Keep the VM's RAM in a file of its own, so that {@link Sandbox.freeze} can save it. */
  freezable?: boolean;
}

/** How a file is written into the guest. */
export interface WriteFileOptions {
  mode?: number;
  /**
   * Write with this user's rights (the agent user is 1000). Needed anywhere that user can write:
   * as root, the guest refuses a path through a directory anyone but root can change.
   */
  uid?: number;
}

/** What a command run in the guest produced. */
export interface GuestExecResult {
  code: number | null;
  signal: string | null;
  durationMs: number;
}

/** A request to run a command in the guest. */
export interface GuestExec {
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  /** Run as this user id (the image's unprivileged `agent` user is 1000); root when unset. */
  uid?: number;
}

/** What {@link Vm.destroy} checked once the VM was gone, for the audit record. */
export interface VmTeardown {
  /** The VMM process no longer runs (checked in /proc after it was killed and reaped). */
  processGone: boolean;
  /** The VM's copy-on-write overlay file no longer exists (checked with stat). */
  overlayDeleted: boolean;
}

/** A running microVM. */
export interface Vm {
  readonly id: string;
  readonly taskId: string;
  readonly accel: 'kvm' | 'tcg';
  /** Cold boot, or restored from a snapshot (then `bootMs` is the restore, spawn to ready). */
  readonly start: 'cold' | 'restored';
  readonly bootMs: number;
  /**
   * How long its launch waited for a place under the host's VM limit (the host ran its limit of
   * VMs), in ms, before its boot began; undefined when a place was free at once.
   */
  readonly queuedMs: number | undefined;
  /**
   * Runs a command in the guest, streaming its output; resolves when its main process exits (after
   * a short grace for its output to drain), whatever it left running in the background.
   */
  exec(
    request: GuestExec,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
    signal?: AbortSignal,
  ): Promise<GuestExecResult>;
  writeFile(path: string, content: string | Buffer, options?: WriteFileOptions): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** Every process executed in the guest, as the guest's init reports it. */
  onExecAudit(listener: (record: ExecAuditRecord) => void): void;
  /**
   * Waits until every exec record of processes started so far has arrived (call before destroy so
   * the record is complete). Rejects after `timeoutMs`.
   */
  syncAudit(timeoutMs?: number): Promise<void>;
  /** Exec records lost in the guest or dropped over the VM's rate, counted (never silent). */
  onExecAuditLoss(listener: (loss: ExecAuditLoss) => void): void;
  /** Lines the guest sent that did not parse (kept for the audit record). */
  onMalformed(listener: (line: string, error: string) => void): void;
  /** Resolves with a reason if the VM stops on its own (crash, power-off, limit). */
  readonly exited: Promise<string>;
  /**
   * Ends every process guest user `uid` has left running (background servers, watchers, ones that
   * called setsid) and returns what it killed. Rejects if any survives.
   */
  killUserProcesses(uid: number): Promise<GuestProcess[]>;
  /** Kills the VMM process group and deletes the overlay, and says what it checked. Safe to call twice. */
  destroy(): Promise<VmTeardown>;
}

/** The worker plane: creates VMs and reaps the ones a crashed process left behind. */
export interface Sandbox {
  readonly accel: 'kvm' | 'tcg';
  /** sha256 of the image manifest, recorded in each task's audit record. */
  readonly imageDigest: string;
  /** The Debian release of the image (environment builds install packages from its archive). */
  readonly debianRelease: string;
  /** npm package → version of each agent CLI installed in the image (from its manifest). */
  readonly agentPackages: Readonly<Record<string, string>>;
  create(spec: VmSpec, signal?: AbortSignal): Promise<Vm>;
  /**
   * Freezes a VM created `freezable`, whose guest agent is idle, into `dir` (made atomically,
   * read-only afterwards). The VM is gone afterwards, as if destroyed.
   */
  freeze(vm: Vm, dir: string): Promise<VmSnapshot>;
  /** A snapshot made earlier; undefined when missing, incomplete, or made for another image, QEMU or host. */
  openSnapshot(dir: string): Promise<VmSnapshot | undefined>;
  /** Discards the warm VMs kept for a snapshot no longer used (its environment was rebuilt). */
  drainWarmPool(snapshot: VmSnapshot): Promise<void>;
  /**
   * Discards every warm VM and keeps no more (airlock stopping): VMs nobody holds must not outlive
   * the airlock that made them, even when its process goes on. Tasks' own VMs are their runners'.
   */
  close(): Promise<void>;
  /**
   * Destroys every VM and overlay in the data directory whose owner process is gone (crashed,
   * killed); returns the task ids they belonged to. VMs of a live owner are left alone.
   */
  reapOrphans(): Promise<string[]>;
}
