import { execa } from 'execa';
import { ProcessError } from '../errors.ts';
import { BASE_ENV } from './run-process.ts';

/** What {@link spawnProcess} needs to start a long-running child. */
export interface SpawnProcessOptions {
  /** The complete environment: the parent's is never inherited. */
  env?: Record<string, string>;
  cwd?: string;
  /** Longest the child may run before it is killed; none when unset (its owner ends it with kill()). */
  timeoutMs?: number;
  /** Aborting kills the child. */
  signal?: AbortSignal;
  /** Run the child as the leader of its own process group, so kill() reaches its descendants. */
  detached?: boolean;
  /**
   * Kill the child (SIGKILL) when its owner dies, even by `kill -9`: started through util-linux
   * `setpriv --pdeathsig KILL`. The kernel sends it when the thread that spawned the child exits;
   * Node spawns from the thread running the event loop, so that is the process's own end (or a
   * worker thread's, if a worker started it).
   */
  dieWithOwner?: boolean;
  /** How much of the end of stderr to keep for the exit report, in bytes (default 64 KiB). */
  stderrTailBytes?: number;
}

/** How a spawned child ended. */
export interface ProcessExit {
  exitCode: number | undefined;
  signal: string | undefined;
  /** The last `stderrTailBytes` of what it wrote to stderr. */
  stderr: string;
  timedOut: boolean;
  cancelled: boolean;
}

/** A running child started by {@link spawnProcess}. */
export interface ProcessHandle {
  readonly pid: number;
  /** Resolves (never rejects) once the child has exited. */
  readonly exited: Promise<ProcessExit>;
  /** SIGKILL to the child, and to its whole group when detached; harmless once it is gone. */
  kill(): void;
}

/**
 * Starts a child that outlives the call (a VMM, a server) through the same rules as
 * runProcess: explicit environment, an optional timeout, an AbortSignal, stderr kept for the exit
 * report. The caller owns the handle and must kill() it in its `finally`.
 */
export async function spawnProcess(
  file: string,
  args: readonly string[],
  options: SpawnProcessOptions,
): Promise<ProcessHandle> {
  const [command, argv] = options.dieWithOwner
    ? ['setpriv', ['--pdeathsig', 'KILL', '--', file, ...args]]
    : [file, [...args]];
  const child = execa(command, argv, {
    env: { ...BASE_ENV, ...options.env },
    extendEnv: false,
    cwd: options.cwd,
    detached: options.detached ?? false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    // Killed when this process exits normally too, not only when it dies (dieWithOwner).
    cleanup: true,
  });
  const pid = child.pid;
  if (!pid) {
    const result = await child;
    throw new ProcessError(`${command} could not start: ${result.message}`, {
      cause: result.cause,
      hint: options.dieWithOwner ? 'setpriv comes with util-linux; is it installed?' : undefined,
    });
  }
  const tailBytes = options.stderrTailBytes ?? 64 * 1024;
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (data: string) => {
    stderr = (stderr + data).slice(-tailBytes);
  });
  let timedOut = false;
  let cancelled = false;
  const kill = () => {
    try {
      process.kill(options.detached ? -pid : pid, 'SIGKILL');
    } catch {
      // Already gone: nothing to kill.
    }
  };
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          kill();
        }, options.timeoutMs);
  const onAbort = () => {
    cancelled = true;
    kill();
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const exited = child.then((result) => {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    return { exitCode: result.exitCode, signal: result.signal, stderr, timedOut, cancelled };
  });
  return { pid, exited, kill };
}
