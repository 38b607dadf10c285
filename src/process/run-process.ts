import { execa } from 'execa';
import { ProcessError } from '../errors.ts';

/** What {@link runProcess} needs to start a child. */
export interface RunProcessOptions {
  /** The complete environment: the parent's is never inherited. */
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs: number;
  signal?: AbortSignal;
  input?: string | Buffer;
  /** Run the child as the leader of its own process group so that kill reaches its descendants. */
  detached?: boolean;
  /** Exit codes that are not failures (default: only 0). */
  okExitCodes?: readonly number[];
  /** Cap on captured stdout/stderr, in bytes. */
  maxBufferBytes?: number;
  encoding?: 'utf8' | 'buffer';
}

/** The outcome of a finished child. */
export interface ProcessResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** What every child gets unless its caller says otherwise; the parent's environment is never passed on. */
export const BASE_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
};

/**
 * Runs a child process through the one wrapper every part uses: explicit environment, a timeout,
 * an AbortSignal, stderr carried in the error, and the child killed if the caller gives up.
 */
export async function runProcess(
  file: string,
  args: readonly string[],
  options: RunProcessOptions,
): Promise<ProcessResult> {
  const started = performance.now();
  const result = await execa(file, args, {
    env: { ...BASE_ENV, ...options.env },
    extendEnv: false,
    cwd: options.cwd,
    timeout: options.timeoutMs,
    cancelSignal: options.signal,
    input: options.input,
    detached: options.detached ?? false,
    reject: false,
    stripFinalNewline: false,
    maxBuffer: options.maxBufferBytes ?? 64 * 1024 * 1024,
    forceKillAfterDelay: 2_000,
  });
  const durationMs = performance.now() - started;
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  const ok = options.okExitCodes ?? [0];
  if (result.timedOut) {
    throw new ProcessError(`${file} timed out after ${options.timeoutMs} ms`, {
      stderr,
      exitCode: result.exitCode,
    });
  }
  if (result.isCanceled) {
    throw new ProcessError(`${file} was cancelled`, { stderr, exitCode: result.exitCode });
  }
  if (result.exitCode === undefined || !ok.includes(result.exitCode)) {
    const detail = stderr.trim().split('\n').slice(-20).join('\n');
    throw new ProcessError(
      `${file} ${args.join(' ')} exited with ${result.exitCode ?? result.signal}${detail ? `: ${detail}` : ''}`,
      { stderr, exitCode: result.exitCode, cause: result.cause },
    );
  }
  return { exitCode: result.exitCode, stdout, stderr, durationMs };
}
