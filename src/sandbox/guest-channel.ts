import { randomBytes, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { SandboxError } from '../errors.ts';
import type { ExecAuditLoss, ExecAuditRecord } from './exec-audit.ts';
import { DEFAULT_EXEC_AUDIT_RATE, ExecAuditLimiter } from './exec-audit-limiter.ts';
import {
  GuestLineParser,
  type GuestMessage,
  type GuestProcess,
  type GuestReady,
  type HostMessage,
  type MalformedGuestLine,
} from './guest-protocol.ts';
import type { GuestExec, GuestExecResult, WriteFileOptions } from './sandbox.ts';

type Pending = {
  onOutput?: ((stream: 'stdout' | 'stderr', data: string) => void) | undefined;
  resolve(message: GuestMessage): void;
  reject(error: Error): void;
};

/**
 * The host end of a VM's control channel: sends requests, routes the guest's answers to whoever
 * asked, forwards exec-audit records, and counts output against the VM's limit.
 */
export class GuestChannel {
  readonly #socket: Socket;
  readonly #parser = new GuestLineParser();
  readonly #pending = new Map<string, Pending>();
  readonly #auditListeners: Array<(r: ExecAuditRecord) => void> = [];
  readonly #malformedListeners: Array<(line: string, error: string) => void> = [];
  readonly #lossListeners: Array<(loss: ExecAuditLoss) => void> = [];
  #execLimiter: ExecAuditLimiter;
  #outputLimit: number;
  #outputBytes = 0;
  #closed: Error | undefined;
  #ready: { resolve(m: GuestReady): void; reject(e: Error): void } | undefined;
  /** The guest's ready report; rejects if it does not parse (the VM is then not used). */
  readonly ready: Promise<GuestReady>;
  /** Called when the guest exceeds the output limit. */
  onOutputLimit: (() => void) | undefined;

  constructor(socket: Socket, outputLimitBytes: number, execAuditRate = DEFAULT_EXEC_AUDIT_RATE) {
    this.#socket = socket;
    this.#outputLimit = outputLimitBytes;
    this.#execLimiter = new ExecAuditLimiter(execAuditRate, (summary) => this.#lost(summary));
    this.ready = new Promise((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    // Settled by create(); a channel closed before it is read must not leave an unhandled rejection.
    this.ready.catch(() => {});
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      for (const message of this.#parser.push(chunk)) this.#dispatch(message);
    });
    socket.on('close', () => this.close(new SandboxError('vm_gone', 'the VM closed its control channel')));
    socket.on('error', (error) =>
      this.close(new SandboxError('vm_gone', `control channel failed: ${error.message}`)),
    );
  }

  onExecAudit(listener: (r: ExecAuditRecord) => void): void {
    this.#auditListeners.push(listener);
  }

  onMalformed(listener: (line: string, error: string) => void): void {
    this.#malformedListeners.push(listener);
  }

  onExecAuditLoss(listener: (loss: ExecAuditLoss) => void): void {
    this.#lossListeners.push(listener);
  }

  /** Reports exec records dropped over the rate limit that are not yet summarised. */
  flushExecAuditDrops(): void {
    this.#execLimiter.flush();
  }

  /** Runs a command in the guest. */
  async exec(
    request: GuestExec,
    onOutput?: (stream: 'stdout' | 'stderr', data: string) => void,
    signal?: AbortSignal,
  ): Promise<GuestExecResult> {
    const id = randomUUID();
    const abort = () => this.#send({ type: 'signal', id, signal: 'SIGKILL' });
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const message = await this.#request(
        {
          type: 'exec',
          id,
          argv: request.argv,
          env: request.env ?? {},
          ...(request.cwd ? { cwd: request.cwd } : {}),
          ...(request.stdin !== undefined ? { stdin: request.stdin } : {}),
          ...(request.timeoutMs ? { timeoutMs: request.timeoutMs } : {}),
          ...(request.uid !== undefined ? { uid: request.uid } : {}),
        },
        onOutput,
      );
      if (message.type !== 'exit')
        throw new SandboxError('guest_error', `guest answered ${message.type} to exec`);
      return { code: message.code, signal: message.signal ?? null, durationMs: message.durationMs ?? 0 };
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  async writeFile(path: string, content: string | Buffer, options: WriteFileOptions = {}): Promise<void> {
    const contentBase64 = Buffer.from(content).toString('base64');
    await this.#request({
      type: 'write_file',
      id: randomUUID(),
      path,
      contentBase64,
      ...(options.mode ? { mode: options.mode } : {}),
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
    });
  }

  async readFile(path: string): Promise<Buffer> {
    const message = await this.#request({ type: 'read_file', id: randomUUID(), path });
    if (message.type !== 'file')
      throw new SandboxError('guest_error', `guest answered ${message.type} to read_file`);
    return Buffer.from(message.contentBase64, 'base64');
  }

  /**
   * Resolves once the guest has sent every exec record for processes started before this call.
   * The guest runs a marker process and answers when the marker's own record comes through the
   * kernel's audit queue, which is first in, first out.
   */
  async syncAudit(): Promise<void> {
    await this.#request({ type: 'sync_audit', id: randomUUID() });
  }

  /**
   * Ends every process of guest user `uid` (stopped first, so none can fork past the kill, then
   * killed) and returns what was killed.
   */
  async killUserProcesses(uid: number): Promise<{ processes: GuestProcess[]; survivors: number[] }> {
    const message = await this.#request({ type: 'kill_user_processes', id: randomUUID(), uid });
    if (message.type !== 'killed')
      throw new SandboxError('guest_error', `guest answered ${message.type} to kill_user_processes`);
    return { processes: message.processes, survivors: message.survivors };
  }

  /**
   * Makes a VM restored from a snapshot its own before anything runs in it: reseeds the kernel's
   * RNG from host entropy, sets the clock, gives it a host name and machine id.
   */
  async resume(identity: { hostname: string }): Promise<void> {
    await this.#request({
      type: 'resume',
      id: randomUUID(),
      seedHex: randomBytes(64).toString('hex'),
      epochMs: Date.now(),
      hostname: identity.hostname,
      machineId: randomBytes(16).toString('hex'),
    });
  }

  /**
   * Starts the channel's accounting afresh for a task (a warm VM's channel was opened before its
   * task existed): the task's output limit and exec-record rate, nothing counted yet.
   */
  startTask(outputLimitBytes: number, execAuditRate = DEFAULT_EXEC_AUDIT_RATE): void {
    this.#outputLimit = outputLimitBytes;
    this.#outputBytes = 0;
    this.#execLimiter = new ExecAuditLimiter(execAuditRate, (summary) => this.#lost(summary));
  }

  /** Whether no request is waiting for the guest (a VM is frozen only then). */
  get idle(): boolean {
    return this.#pending.size === 0;
  }

  /** Asks the guest to power off (best effort). */
  shutdown(): void {
    this.#send({ type: 'shutdown' });
  }

  /** Fails every pending request; later requests fail at once. */
  close(reason: Error): void {
    if (this.#closed) return;
    this.#closed = reason;
    this.#ready?.reject(reason);
    this.#execLimiter.flush();
    for (const pending of this.#pending.values()) pending.reject(reason);
    this.#pending.clear();
    this.#socket.destroy();
  }

  #lost(loss: ExecAuditLoss): void {
    for (const l of this.#lossListeners) l(loss);
  }

  #request(message: HostMessage & { id: string }, onOutput?: Pending['onOutput']): Promise<GuestMessage> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#pending.set(message.id, { resolve, reject, onOutput });
      this.#send(message);
    });
  }

  #send(message: HostMessage): void {
    if (!this.#closed) this.#socket.write(`${JSON.stringify(message)}\n`);
  }

  #dispatch(message: GuestMessage | MalformedGuestLine): void {
    switch (message.type) {
      case 'malformed':
        if (message.claimedType === 'ready') {
          this.#ready?.reject(
            new SandboxError('vm_boot_failed', `the guest's ready report did not parse (${message.error})`, {
              hint: 'the VM image may be older than this airlock: rebuild it with vm-images/build.sh',
            }),
          );
        }
        for (const l of this.#malformedListeners) l(message.line, message.error);
        return;
      case 'ready':
        this.#ready?.resolve(message);
        return;
      case 'exec_audit':
        if (!this.#execLimiter.admit()) return;
        for (const l of this.#auditListeners) {
          l({
            ts: message.ts ?? new Date().toISOString(),
            pid: message.pid ?? null,
            ppid: message.ppid ?? null,
            argv: message.argv,
            cwd: message.cwd ?? null,
            uid: message.uid ?? null,
          });
        }
        return;
      case 'exec_audit_lost':
        this.#lost({
          kind: 'lost',
          reason: message.reason,
          records: message.records,
          firstSerial: message.firstSerial,
          lastSerial: message.lastSerial,
        });
        return;
      case 'log':
        // The guest's own notes (such as a kernel-log overrun) go on the record as malformed-free notices.
        for (const l of this.#malformedListeners) l(message.message, 'guest notice');
        return;
      case 'stdout':
      case 'stderr': {
        this.#outputBytes += Buffer.byteLength(message.data);
        if (this.#outputBytes > this.#outputLimit) {
          this.onOutputLimit?.();
          return;
        }
        this.#pending.get(message.id)?.onOutput?.(message.type, message.data);
        return;
      }
      default: {
        const id = 'id' in message ? message.id : undefined;
        const pending = id ? this.#pending.get(id) : undefined;
        if (!pending) return;
        this.#pending.delete(id as string);
        if (message.type === 'error')
          pending.reject(new SandboxError('guest_error', `guest: ${message.message}`));
        else pending.resolve(message);
      }
    }
  }
}
