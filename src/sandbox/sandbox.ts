import type { ExecAuditRecord } from './exec-audit.ts';

/** Resources and wiring for one task's VM. */
export interface VmSpec {
  taskId: string;
  cpus: number;
  memoryMib: number;
  diskMib: number;
  /** Unix socket of this task's credential-proxy listener, forwarded to 10.0.2.100:80 in the guest. */
  proxySocket?: string;
  /** Cap on output streamed from the guest, in bytes; exceeding it ends the task. */
  outputLimitBytes: number;
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

/** A running microVM. */
export interface Vm {
  readonly id: string;
  readonly taskId: string;
  readonly accel: 'kvm' | 'tcg';
  readonly bootMs: number;
  /** Runs a command in the guest, streaming its output; resolves when it exits. */
  exec(
    request: GuestExec,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
    signal?: AbortSignal,
  ): Promise<GuestExecResult>;
  writeFile(path: string, content: string | Buffer, mode?: number): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** Every process executed in the guest, as the guest's init reports it. */
  onExecAudit(listener: (record: ExecAuditRecord) => void): void;
  /**
   * Waits until every exec record of processes started so far has arrived (call before destroy so
   * the record is complete). Rejects after `timeoutMs`.
   */
  syncAudit(timeoutMs?: number): Promise<void>;
  /** Lines the guest sent that did not parse (kept for the audit record). */
  onMalformed(listener: (line: string, error: string) => void): void;
  /** Resolves with a reason if the VM stops on its own (crash, power-off, limit). */
  readonly exited: Promise<string>;
  /** Kills the VMM process group and deletes the overlay. Safe to call twice. */
  destroy(): Promise<void>;
}

/** The worker plane: creates VMs and reaps the ones a crashed process left behind. */
export interface Sandbox {
  readonly accel: 'kvm' | 'tcg';
  /** sha256 of the image manifest, recorded in each task's audit record. */
  readonly imageDigest: string;
  /** npm package → version of each agent CLI installed in the image (from its manifest). */
  readonly agentPackages: Readonly<Record<string, string>>;
  create(spec: VmSpec, signal?: AbortSignal): Promise<Vm>;
  /** Destroys every VM and overlay this host left behind; returns the task ids they belonged to. */
  reapOrphans(): Promise<string[]>;
}
