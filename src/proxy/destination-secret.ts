import { Transform, type TransformCallback } from 'node:stream';

/**
 * A credential the operator bound to one destination. The proxy adds it to requests to `host:port`
 * and nowhere else; `value` is a secret and lives in the control plane only.
 */
export interface DestinationSecret {
  /** The operator's name for it (in the policy file and the audit record; never the value). */
  name: string;
  host: string;
  port: number;
  /** The header it travels in, lower-case (`authorization` for Basic). */
  header: string;
  /** The header's whole value as sent upstream (`Bearer …`, `Basic …`, or the bare token). */
  headerValue: string;
  /** The raw secret values inside it (the token, or the Basic password), for redaction. */
  values: readonly string[];
  /** Extra CA certificates (PEM) to trust for this host's own certificate, when it is not public. */
  upstreamCa?: string;
}

/** Builds a secret sent in a header: `scheme value` when a scheme (e.g. Bearer) is given. */
export function headerSecret(params: {
  name: string;
  host: string;
  port: number;
  header: string;
  scheme?: string;
  value: string;
  upstreamCa?: string;
}): DestinationSecret {
  return {
    name: params.name,
    host: params.host.toLowerCase(),
    port: params.port,
    header: params.header.toLowerCase(),
    headerValue: params.scheme ? `${params.scheme} ${params.value}` : params.value,
    values: [params.value],
    ...(params.upstreamCa ? { upstreamCa: params.upstreamCa } : {}),
  };
}

/** Builds a secret sent as HTTP Basic credentials (`authorization: Basic base64(user:password)`). */
export function basicSecret(params: {
  name: string;
  host: string;
  port: number;
  username: string;
  password: string;
  upstreamCa?: string;
}): DestinationSecret {
  const encoded = Buffer.from(`${params.username}:${params.password}`).toString('base64');
  return {
    name: params.name,
    host: params.host.toLowerCase(),
    port: params.port,
    header: 'authorization',
    headerValue: `Basic ${encoded}`,
    values: [params.password, encoded],
    ...(params.upstreamCa ? { upstreamCa: params.upstreamCa } : {}),
  };
}

/**
 * Every spelling of a secret that must never reach the guest: each raw value, its base64 and
 * URL-encoded forms, and the header value as sent.
 */
export function secretForms(secret: DestinationSecret): string[] {
  const forms = new Set<string>([secret.headerValue]);
  for (const value of secret.values) {
    forms.add(value);
    forms.add(encodeURIComponent(value));
    forms.add(Buffer.from(value).toString('base64'));
  }
  return [...forms].filter((form) => form.length >= 4);
}

export const REDACTED_MARK = '[airlock: credential removed]';

/**
 * A stream that replaces every occurrence of `forms` with a mark, also across chunk boundaries:
 * it holds back the last (longest form − 1) bytes until more data or the end arrives.
 */
export class RedactingStream extends Transform {
  readonly #forms: Buffer[];
  readonly #keep: number;
  #pending: Buffer = Buffer.alloc(0);
  /** How many occurrences were removed. */
  found = 0;

  constructor(forms: readonly string[]) {
    super();
    this.#forms = forms.map((f) => Buffer.from(f)).sort((a, b) => b.length - a.length);
    this.#keep = Math.max(0, ...this.#forms.map((f) => f.length - 1));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending = this.#redact(Buffer.concat([this.#pending, chunk]));
    const safe = this.#pending.length - this.#keep;
    if (safe > 0) {
      this.push(this.#pending.subarray(0, safe));
      this.#pending = this.#pending.subarray(safe);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#pending.length) this.push(this.#pending);
    callback();
  }

  #redact(buffer: Buffer): Buffer {
    let out = buffer;
    for (const form of this.#forms) {
      let at = out.indexOf(form);
      if (at < 0) continue;
      const parts: Buffer[] = [];
      let from = 0;
      while (at >= 0) {
        this.found++;
        parts.push(out.subarray(from, at), Buffer.from(REDACTED_MARK));
        from = at + form.length;
        at = out.indexOf(form, from);
      }
      parts.push(out.subarray(from));
      out = Buffer.concat(parts);
    }
    return out;
  }
}
