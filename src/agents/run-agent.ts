import { errorMessage, SandboxError } from '../errors.ts';
import type { GuestProcess } from '../sandbox/guest-protocol.ts';
import type { Vm } from '../sandbox/sandbox.ts';
import type { AgentAdapter, AgentRunInput, AgentStreamParser } from './agent-adapter.ts';
import { type AgentEvent, clip, rawLine } from './agent-event.ts';

/** Longest line held while waiting for its end; a longer one is recorded cut, as raw. */
const MAX_LINE_CHARS = 4 * 1024 * 1024;
/** Lines of a script's output kept as its summary. */
const SUMMARY_LINES = 20;
/** Lines of CLI diagnostics (stderr) kept for the failure message. */
const STDERR_TAIL_LINES = 8;

/** How one agent run went. */
export interface AgentRunResult {
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  /** The agent's own account: its final message (a script: its last lines of output). */
  summary: string;
  /** The last errors the agent reported, then its last diagnostics: why it failed, if it did. */
  failure: string;
  /** How many normalized events the run produced. */
  events: number;
  /** What the agent left running when it exited, killed then (pid and command line in the guest). */
  leftovers: GuestProcess[];
}

/** What a run needs besides the adapter and its input. */
export interface RunAgentOptions {
  /** The guest user the agent runs as. */
  uid: number;
  /** The environment every guest command of the task gets (HOME, proxy settings, …). */
  env: Record<string, string>;
  /** Called for each event as it happens, in order (the runner appends it to the audit record). */
  onEvent(event: AgentEvent): void;
  signal?: AbortSignal;
}

/**
 * Runs one agent CLI in the guest: writes its configuration, starts it with the prompt on stdin,
 * and turns every line it prints into normalized events as they arrive. The caller decides what
 * a non-zero exit means; this only reports it.
 */
export async function runAgent(
  vm: Pick<Vm, 'exec' | 'writeFile' | 'killUserProcesses'>,
  adapter: AgentAdapter,
  input: AgentRunInput,
  options: RunAgentOptions,
): Promise<AgentRunResult> {
  const invocation = adapter.invocation(input);
  const env = { ...options.env, ...invocation.env };
  if (invocation.dirs.length) {
    const made = await vm.exec(
      { argv: ['mkdir', '-p', ...invocation.dirs], uid: options.uid, env, cwd: input.repoDir },
      undefined,
      options.signal,
    );
    if (made.code !== 0) {
      throw new SandboxError('guest_error', `could not create ${invocation.dirs.join(', ')} for the agent`);
    }
  }
  // As the agent user: these paths are in its home, where its own code may have planted links.
  for (const file of invocation.files)
    await vm.writeFile(file.path, file.content, { mode: file.mode ?? 0o644, uid: options.uid });

  let count = 0;
  let finalMessage: string | undefined;
  let lastMessage: string | undefined;
  const outputTail: string[] = [];
  const stderrTail: string[] = [];
  const errors: string[] = [];
  const emit = (event: AgentEvent) => {
    count++;
    if (event.kind === 'message' && event.role === 'assistant') {
      lastMessage = event.text;
      if (event.final) finalMessage = event.text;
    }
    if (event.kind === 'error') errors.push(event.message);
    options.onEvent(event);
  };
  const parser = adapter.parser(input);
  const parse = (stream: 'stdout' | 'stderr', line: string) => {
    if (adapter.stderrIsOutput || stream === 'stdout') {
      if (adapter.stderrIsOutput && line.trim()) pushTail(outputTail, line, SUMMARY_LINES);
      for (const event of safeLine(parser, line, stream)) emit(event);
    } else if (line.trim()) {
      pushTail(stderrTail, line, STDERR_TAIL_LINES);
      emit(rawLine(line, undefined, 'stderr'));
    }
  };
  const readers = {
    stdout: lineReader((l) => parse('stdout', l)),
    stderr: lineReader((l) => parse('stderr', l)),
  };

  const result = await vm.exec(
    { argv: invocation.argv, cwd: input.repoDir, uid: options.uid, env, stdin: invocation.stdin },
    (stream, data) => readers[stream].push(data),
    options.signal,
  );
  readers.stdout.end();
  readers.stderr.end();
  // The agent is done when its main process exits: whatever it left running as its user (a dev
  // server, a watcher, a daemon that called setsid) is killed now, never waited for.
  const leftovers = await vm.killUserProcesses(options.uid);

  const summary = adapter.stderrIsOutput ? outputTail.join('\n') : (finalMessage ?? lastMessage ?? '');
  const failure = [...errors.slice(-3), ...stderrTail].join('\n') || summary.split('\n').slice(-5).join('\n');
  return {
    exitCode: result.code,
    signal: result.signal,
    durationMs: result.durationMs,
    summary,
    failure: clip(failure, 2_000),
    events: count,
    leftovers,
  };
}

/** A parser's events for a line; a parser that throws loses nothing (the line is kept raw). */
function safeLine(parser: AgentStreamParser, line: string, stream: 'stdout' | 'stderr'): AgentEvent[] {
  try {
    return parser.line(line);
  } catch (error) {
    return [rawLine(line, `parser failed: ${errorMessage(error)}`, stream)];
  }
}

function pushTail(tail: string[], line: string, max: number): void {
  tail.push(line);
  if (tail.length > max) tail.shift();
}

/** Splits streamed text into lines; the last line is flushed by `end()` even without a newline. */
function lineReader(onLine: (line: string) => void): { push(data: string): void; end(): void } {
  let pending = '';
  return {
    push(data) {
      pending += data;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        onLine(pending.slice(0, newline).replace(/\r$/, ''));
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
      }
      if (pending.length > MAX_LINE_CHARS) {
        onLine(pending);
        pending = '';
      }
    },
    end() {
      if (pending) onLine(pending);
      pending = '';
    },
  };
}
