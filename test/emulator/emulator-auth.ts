import { createPublicKey, randomBytes, verify } from 'node:crypto';
import type { EmulatorState, PermissionLevel, Token } from './emulator-state.ts';

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

const JWT_MAX_LIFETIME_S = 600;
const CLOCK_DRIFT_S = 60;

/** Verifies an app JWT as GitHub does: RS256, iss = app id, not expired, at most 10 minutes long. */
export function verifyAppJwt(authorization: string | undefined, appId: number, privateKeyPem: string): void {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  if (!match) throw new HttpError(401, 'A JSON web token could not be decoded');
  const [header, payload, signature] = match[1]!.split('.');
  if (!header || !payload || !signature) throw new HttpError(401, 'A JSON web token could not be decoded');
  let alg: unknown;
  let claims: { iss?: unknown; exp?: unknown; iat?: unknown };
  try {
    alg = (JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: unknown }).alg;
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as typeof claims;
  } catch {
    throw new HttpError(401, 'A JSON web token could not be decoded');
  }
  const signed = verify(
    'RSA-SHA256',
    Buffer.from(`${header}.${payload}`),
    createPublicKey(privateKeyPem),
    Buffer.from(signature, 'base64url'),
  );
  if (alg !== 'RS256' || !signed) {
    throw new HttpError(401, 'A JSON web token could not be decoded');
  }
  if (Number(claims.iss) !== appId) throw new HttpError(401, 'Integration not found');
  const now = Math.floor(Date.now() / 1000);
  const exp = Number(claims.exp);
  const iat = Number(claims.iat);
  if (!Number.isFinite(exp) || exp < now) {
    throw new HttpError(
      401,
      "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
    );
  }
  if (!Number.isFinite(iat) || iat > now + CLOCK_DRIFT_S) {
    throw new HttpError(
      401,
      "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
    );
  }
  if (exp - iat > JWT_MAX_LIFETIME_S + CLOCK_DRIFT_S || exp > now + JWT_MAX_LIFETIME_S + CLOCK_DRIFT_S) {
    throw new HttpError(401, "'Expiration time' claim ('exp') is too far in the future");
  }
}

/** The token value of an Authorization header: `token X`, `Bearer X`, or Basic as git sends it. */
export function tokenValueFromHeader(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const scheme = /^(token|bearer)\s+(\S+)$/i.exec(authorization);
  if (scheme) return scheme[2];
  const basic = /^basic\s+(\S+)$/i.exec(authorization);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1]!, 'base64').toString();
  const colon = decoded.indexOf(':');
  const user = colon < 0 ? decoded : decoded.slice(0, colon);
  const password = colon < 0 ? '' : decoded.slice(colon + 1);
  // git sends `x-access-token:<token>`; GitHub also takes the token as the user name.
  return password && password !== 'x-oauth-basic' ? password : user || undefined;
}

/** Finds a live installation token from an Authorization header; 401 when it is not live. */
export function tokenFromHeader(state: EmulatorState, authorization: string | undefined): Token | undefined {
  const value = tokenValueFromHeader(authorization);
  if (!value) return undefined;
  const token = state.tokens.find((t) => t.token === value);
  if (!token || token.revoked || token.expiresAt <= state.now()) throw new HttpError(401, 'Bad credentials');
  return token;
}

/** Requires a token that covers `repo` (404 otherwise, as GitHub hides it) with `permission`. */
export function requireRepoAccess(
  token: Token | undefined,
  repo: string,
  permission: string,
  level: PermissionLevel,
): Token {
  if (!token) throw new HttpError(401, 'Requires authentication');
  if (!token.repositories.includes(repo)) throw new HttpError(404, 'Not Found');
  const granted = token.permissions[permission];
  if (permission === 'metadata') return token;
  if (!granted || (level === 'write' && granted !== 'write')) {
    throw new HttpError(403, 'Resource not accessible by integration');
  }
  return token;
}

/** A fresh opaque token value shaped like GitHub's (`ghs_` and 36 characters). */
export function newTokenValue(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `ghs_${Array.from(randomBytes(36), (b) => alphabet[b % alphabet.length]).join('')}`;
}
