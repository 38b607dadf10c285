import { connect, type Socket } from 'node:net';
import { SandboxError } from '../errors.ts';

type Waiter = { resolve(value: unknown): void; reject(error: Error): void };

/** A conversation with a QEMU monitor (QMP) socket: commands sent and answered in order. */
export class QmpSession {
  readonly #socket: Socket;
  readonly #answers: Waiter[] = [];
  #buffer = '';
  #closed: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async open(socketPath: string, timeoutMs = 10_000): Promise<QmpSession> {
    // QEMU creates and listens on the monitor socket while it starts: try until it answers.
    const deadline = Date.now() + timeoutMs;
    let socket: Socket | undefined;
    while (!socket) {
      socket = await new Promise<Socket | undefined>((resolve) => {
        const attempt = connect(socketPath);
        attempt.once('connect', () => resolve(attempt));
        attempt.once('error', () => resolve(undefined));
      });
      if (socket) break;
      if (Date.now() > deadline)
        throw new SandboxError('guest_error', `QMP: no monitor answers at ${socketPath}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const session = new QmpSession(socket);
    socket.setEncoding('utf8');
    const greeting = new Promise<unknown>((resolve, reject) => session.#answers.push({ resolve, reject }));
    socket.on('data', (chunk: string) => session.#read(chunk));
    socket.on('error', (error) => session.#fail(new SandboxError('guest_error', `QMP: ${error.message}`)));
    socket.on('close', () => session.#fail(new SandboxError('guest_error', 'QMP: the monitor closed')));
    await withTimeout(greeting, timeoutMs, 'QMP greeting');
    await session.execute('qmp_capabilities', undefined, timeoutMs);
    return session;
  }

  /** Runs one command and resolves with its `return` value. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = 120_000): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const answer = new Promise<unknown>((resolve, reject) =>
      this.#answers.push({
        resolve,
        reject: (error) => reject(new SandboxError('guest_error', `QMP ${command}: ${error.message}`)),
      }),
    );
    this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    return withTimeout(answer, timeoutMs, `QMP ${command}`);
  }

  close(): void {
    this.#fail(new SandboxError('guest_error', 'QMP: session closed'));
  }

  #read(chunk: string): void {
    this.#buffer += chunk;
    for (let i = this.#buffer.indexOf('\n'); i >= 0; i = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, i).trim();
      this.#buffer = this.#buffer.slice(i + 1);
      if (!line) continue;
      let message: { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
      try {
        message = JSON.parse(line);
      } catch {
        this.#fail(new SandboxError('guest_error', `QMP: unreadable answer: ${line.slice(0, 200)}`));
        return;
      }
      // Asynchronous events (STOP, RESUME, ...) are not answers.
      if (message.event) continue;
      const waiter = this.#answers.shift();
      if (!waiter) continue;
      if (message.error) waiter.reject(new Error(message.error.desc ?? JSON.stringify(message.error)));
      else waiter.resolve(message.QMP ?? message.return);
    }
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#closed = error;
    for (const waiter of this.#answers.splice(0)) waiter.reject(error);
    this.#socket.destroy();
  }
}

/** Runs one QMP command on a monitor socket, in a session of its own. */
export async function qmpExecute(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 120_000,
): Promise<unknown> {
  const session = await QmpSession.open(socketPath);
  try {
    return await session.execute(command, args, timeoutMs);
  } finally {
    session.close();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SandboxError('guest_error', `${what}: no answer within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
