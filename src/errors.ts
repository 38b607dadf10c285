/**
 * airlock's typed errors. Every message says what went wrong and what to do about it; `cause`
 * keeps the underlying error for logs.
 */
export class AirlockError extends Error {
  /** A short machine-readable code, stable across releases (used in task reasons and metrics). */
  readonly code: string;
  /** What an operator or user can do to fix it. */
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(options.hint ? `${message} (${options.hint})` : message, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** App settings or a repository's .github/airlock.yml are invalid. */
export class ConfigError extends AirlockError {
  readonly issues: readonly string[];
  constructor(
    message: string,
    issues: readonly string[] = [],
    options: { cause?: unknown; hint?: string } = {},
  ) {
    super('config_invalid', issues.length ? `${message}:\n  - ${issues.join('\n  - ')}` : message, options);
    this.issues = issues;
  }
}

/** A GitHub API call failed after retries. */
export class GitHubError extends AirlockError {
  readonly status: number | undefined;
  constructor(message: string, options: { cause?: unknown; hint?: string; status?: number } = {}) {
    super('github_error', message, options);
    this.status = options.status;
  }
}

/**
 * Whether retrying cannot help: GitHub refused the request itself (a 4xx other than rate limits,
 * 408 and 403, which rate limiting also answers). Outages, 5xx and network errors are transient.
 */
export function isPermanentFailure(error: unknown): boolean {
  if (!(error instanceof GitHubError) || error.status === undefined) return false;
  const { status } = error;
  return status >= 400 && status < 500 && status !== 403 && status !== 408 && status !== 429;
}

/** The sandbox could not boot, run or destroy a VM. */
export class SandboxError extends AirlockError {
  constructor(code: string, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(code, message, options);
  }
}

/** The credential proxy refused or failed a request. */
export class ProxyError extends AirlockError {
  constructor(code: string, message: string, options: { cause?: unknown; hint?: string } = {}) {
    super(code, message, options);
  }
}

/** A task moved (or was asked to move) in a way its state machine forbids. */
export class TaskStateError extends AirlockError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('task_state', message, options);
  }
}

/**
 * Queued work this process had claimed was taken by another (its lease ended while this process
 * stalled): what it decided is rolled back, and the other process's decision stands.
 */
export class ClaimLost extends AirlockError {
  constructor(message: string) {
    super('claim_lost', message, {
      hint: 'nothing to do; if it recurs, look for a control-plane process stalling for a minute',
    });
  }
}

/** A child process failed: carries its stderr so the cause is visible. */
export class ProcessError extends AirlockError {
  readonly exitCode: number | undefined;
  readonly stderr: string;
  constructor(
    message: string,
    options: { cause?: unknown; hint?: string; exitCode?: number | undefined; stderr?: string } = {},
  ) {
    super('process_failed', message, options);
    this.exitCode = options.exitCode;
    this.stderr = options.stderr ?? '';
  }
}

/** A repository's agent settings cannot work (a missing or unsafe script path, …). */
export class AgentConfigError extends AirlockError {
  constructor(message: string, options: { cause?: unknown; hint?: string } = {}) {
    super('agent_config', message, options);
  }
}

/** Returns the error's message, whatever was thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
