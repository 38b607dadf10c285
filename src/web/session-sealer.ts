import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Seals small JSON values into cookie-safe strings with AES-256-GCM: the browser can neither read
 * nor alter them (the tag authenticates them, so a sealed value is also a signed one). `purpose`
 * is bound into the seal, so a value sealed for one cookie is refused by another.
 */
export class Sealer {
  readonly #key: Buffer;

  constructor(secret: string) {
    if (secret.length < 32) throw new Error('the session secret must be at least 32 characters');
    this.#key = Buffer.from(hkdfSync('sha256', secret, 'airlock', 'airlock cookie seal v1', 32));
  }

  /** Seals `value` for `purpose`. */
  seal(purpose: string, value: unknown): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(purpose));
    const body = Buffer.concat([cipher.update(JSON.stringify(value)), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
  }

  /** The value sealed for `purpose`, or undefined when the text is not one of our seals. */
  unseal(purpose: string, text: string | undefined): unknown {
    if (!text) return undefined;
    const raw = Buffer.from(text, 'base64url');
    if (raw.length <= IV_BYTES + TAG_BYTES) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(purpose));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      const body = Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
      return JSON.parse(body.toString());
    } catch {
      // A forged, truncated or foreign cookie is simply not a session.
      return undefined;
    }
  }
}
