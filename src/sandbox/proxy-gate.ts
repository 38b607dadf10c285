import { chmod } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { SandboxError } from '../errors.ts';

/**
 * Connections one VM may hold open to its proxy at once. Each guest connection costs the host a
 * helper process (QEMU's guestfwd `cmd:` starts one per connection); an agent needs a handful
 * (git, the model API, a few egress fetches in parallel).
 */
export const MAX_PROXY_CONNECTIONS = 64;

/** A VM's gate to its proxy: where QEMU's helpers connect, and how many it refused. */
export interface ProxyGate {
  readonly socketPath: string;
  /** Connections refused because the VM already held its maximum. */
  readonly refused: number;
  /** Points the gate at a task's proxy (a VM taken from the warm pool gets its task's only then). */
  attach(target: string): void;
  close(): Promise<void>;
}

/**
 * Listens on `socketPath` and relays each connection to the task's proxy at `target`, holding at
 * most `maxConnections` at once: a connection beyond that is closed at once, so its helper process
 * exits at once, and a guest opening thousands of connections holds at most that many helpers on
 * the host. Half-closes pass through (a request body's end, then the answer).
 */
export async function openProxyGate(options: {
  socketPath: string;
  /** The task's proxy socket; until one is attached, every connection is closed at once. */
  target?: string | undefined;
  maxConnections: number;
}): Promise<ProxyGate> {
  const open = new Set<Socket>();
  let refused = 0;
  let target = options.target;
  const server = createServer({ allowHalfOpen: true }, (guest) => {
    if (!target) {
      guest.destroy();
      return;
    }
    const upstream = connect({ path: target, allowHalfOpen: true });
    open.add(guest);
    open.add(upstream);
    const teardown = () => {
      guest.destroy();
      upstream.destroy();
      open.delete(guest);
      open.delete(upstream);
    };
    for (const socket of [guest, upstream]) {
      socket.on('error', teardown);
      socket.on('close', teardown);
    }
    guest.pipe(upstream);
    upstream.pipe(guest);
  });
  server.maxConnections = options.maxConnections;
  server.on('drop', () => {
    refused++;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) =>
      reject(
        new SandboxError('vm_spawn_failed', `could not listen on ${options.socketPath}: ${error.message}`),
      ),
    );
    server.listen(options.socketPath, resolve);
  });
  await chmod(options.socketPath, 0o600);
  return {
    socketPath: options.socketPath,
    get refused() {
      return refused;
    },
    attach(socketPath: string) {
      target = socketPath;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        open.clear();
        server.close(() => resolve());
      }),
  };
}
