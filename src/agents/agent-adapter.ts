import type { AgentEvent } from './agent-event.ts';

/** The agents a repository can choose in `.github/airlock.yml`. */
export type AgentName = 'claude' | 'codex' | 'opencode' | 'script';

/** Everything an adapter needs to build one run; nothing secret is ever part of it. */
export interface AgentRunInput {
  /** The prompt airlock assembled on the host. */
  prompt: string;
  /** Where the runner wrote the prompt in the guest. */
  promptFile: string;
  /** The repository checkout the agent works in. */
  repoDir: string;
  /** The agent user's home directory. */
  homeDir: string;
  /** The task proxy as the guest sees it, e.g. `http://10.0.2.100`. */
  proxyUrl: string;
  taskId: string;
  /** The model name from the repository's config; the CLI's default when unset. */
  model?: string;
  /** For `script`: the script's path inside the repository. */
  script?: string;
}

/** A file the adapter needs in the guest before the CLI starts (CLI configuration). */
export interface GuestFile {
  path: string;
  content: string;
  mode?: number;
}

/** How to start the agent in the guest: command line, environment, files and stdin. */
export interface AgentInvocation {
  argv: string[];
  env: Record<string, string>;
  /** Directories created as the agent user first, so the CLI can write its own state there. */
  dirs: string[];
  files: GuestFile[];
  stdin: string;
}

/** Turns the lines one CLI prints into normalized events. Stateful: one per run. */
export interface AgentStreamParser {
  /** The events for one complete stdout line (at least one, `raw` when nothing else fits). */
  line(line: string): AgentEvent[];
}

/** One agent CLI: how to start it pointed at the proxy, and how to read what it prints. */
export interface AgentAdapter {
  readonly name: AgentName;
  /** The npm package the image installs the CLI from (none for scripts). */
  readonly npmPackage?: string;
  /** Builds the run; throws an AgentConfigError when the repository's config cannot work. */
  invocation(input: AgentRunInput): AgentInvocation;
  parser(input: AgentRunInput): AgentStreamParser;
  /**
   * Whether stderr lines are the agent's own words (a script's) or CLI diagnostics. Diagnostics
   * are recorded as raw stderr lines and kept for the failure message.
   */
  readonly stderrIsOutput: boolean;
}

/** A placeholder the CLIs send as their API key; the proxy replaces it with the real one. */
export const PLACEHOLDER_API_KEY = 'airlock-placeholder-key';
