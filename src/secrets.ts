/**
 * The registry of secret values this process holds (installation tokens, model keys, webhook
 * secret). The logger and the audit log scrub every registered value, and anything that matches a
 * configured pattern, before a line is written: redaction happens once, not at each call site.
 */
export class SecretRedactor {
  readonly #values = new Set<string>();
  readonly #patterns: RegExp[];

  constructor(patterns: readonly (string | RegExp)[] = DEFAULT_SECRET_PATTERNS) {
    this.#patterns = patterns.map((p) => (typeof p === 'string' ? new RegExp(p, 'g') : ensureGlobal(p)));
  }

  /** Registers a secret value; values shorter than 8 characters are refused as too easy to match by chance. */
  add(value: string): void {
    if (value.length < 8) throw new Error('refusing to register a secret shorter than 8 characters');
    this.#values.add(value);
  }

  /** Forgets a secret value (after the token it belongs to has been revoked). */
  delete(value: string): void {
    this.#values.delete(value);
  }

  /** Replaces every registered secret and every pattern match in `text` with `[REDACTED]`. */
  scrub(text: string): string {
    let out = text;
    for (const value of this.#values) {
      if (out.includes(value)) out = out.split(value).join(REDACTED);
    }
    for (const pattern of this.#patterns) out = out.replace(pattern, REDACTED);
    return out;
  }

  /** Scrubs every string inside a JSON-like value, returning a copy. */
  scrubValue<T>(value: T): T {
    return JSON.parse(this.scrub(JSON.stringify(value) ?? 'null')) as T;
  }
}

export const REDACTED = '[REDACTED]';

/**
 * Shapes of credentials that must never be stored even when we did not mint them: GitHub tokens
 * (classic and fine-grained prefixes), Anthropic and OpenAI keys, PEM private keys, and
 * `Authorization:` header values. Installation tokens are also registered by value, since their
 * format is changing.
 */
export const DEFAULT_SECRET_PATTERNS: readonly RegExp[] = [
  /\b(?:ghs|ghp|gho|ghu|ghr)_[A-Za-z0-9]{20,}\b/g,
  /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g,
  /\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}\b/g,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  /(?<=[Aa]uthorization["']?\s*[:=]\s*["']?(?:[Bb]earer|[Tt]oken|[Bb]asic)\s)[A-Za-z0-9._~+/=-]{8,}/g,
];

function ensureGlobal(re: RegExp): RegExp {
  return re.flags.includes('g') ? re : new RegExp(re.source, `${re.flags}g`);
}
