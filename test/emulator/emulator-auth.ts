import { createPublicKey, randomBytes, verify } from 'node:crypto';
import type { EmulatorState, Token } from './emulator-state.ts';

/** An HTTP error the router turns into GitHub's JSON error shape. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** Verifies an app JWT (RS256, iss = app id, not expired, at most 10 minutes long). */
export function verifyAppJwt(authorization: string | undefined, appId: number, privateKeyPem: string): void {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  if (!match) throw new HttpError(401, 'A JSON web token could not be decoded');
  const [header, payload, signature] = match[1]!.split('.');
  if (!header || !payload || !signature) throw new HttpError(401, 'A JSON web token could not be decoded');
  const ok = verify(
    'RSA-SHA256',
    Buffer.from(`${header}.${payload}`),
    createPublicKey(privateKeyPem),
    Buffer.from(signature, 'base64url'),
  );
  if (!ok) throw new HttpError(401, "'Issuer' claim ('iss') must be an Integer");
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as {
    iss: unknown;
    exp: number;
    iat: number;
  };
  const now = Math.floor(Date.now() / 1000);
  if (Number(claims.iss) !== appId) throw new HttpError(401, 'Integration not found');
  if (claims.exp < now || claims.exp - claims.iat > 660)
    throw new HttpError(401, "'Expiration time' claim ('exp') is too far in the future");
}

/** Finds a live installation token from an Authorization header (token, Bearer or Basic). */
export function tokenFromHeader(state: EmulatorState, authorization: string | undefined): Token | undefined {
  if (!authorization) return undefined;
  let value: string | undefined;
  const scheme = /^(token|bearer)\s+(\S+)$/i.exec(authorization);
  if (scheme) value = scheme[2];
  const basic = /^basic\s+(\S+)$/i.exec(authorization);
  if (basic) value = Buffer.from(basic[1]!, 'base64').toString().split(':').slice(1).join(':');
  if (!value) return undefined;
  const token = state.tokens.find((t) => t.token === value);
  if (!token || token.revoked || token.expiresAt < Date.now()) throw new HttpError(401, 'Bad credentials');
  return token;
}

/** Requires a token that covers `repo` with at least `level` of `permission`. */
export function requireRepoAccess(
  token: Token | undefined,
  repo: string,
  permission: string,
  level: 'read' | 'write',
): Token {
  if (!token) throw new HttpError(401, 'Requires authentication');
  if (!token.repositories.includes(repo)) throw new HttpError(404, 'Not Found');
  const granted = token.permissions[permission];
  if (permission === 'metadata' && !granted) return token;
  if (!granted || (level === 'write' && granted !== 'write')) {
    throw new HttpError(403, 'Resource not accessible by integration');
  }
  return token;
}

/** A fresh opaque token value. */
export function newTokenValue(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `ghs_${Array.from(randomBytes(36), (b) => alphabet[b % alphabet.length]).join('')}`;
}
