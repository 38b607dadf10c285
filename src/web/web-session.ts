import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { Sealer } from './session-sealer.ts';

/** A signed-in person: who GitHub said they are, and their user token (never sent to the browser readable). */
export const Session = z.object({
  login: z.string(),
  userId: z.number(),
  token: z.string(),
  /** Epoch ms: when the sign-in ends. */
  expiresAt: z.number(),
  /** GitHub's refresh token, when the app's user tokens expire (the default for GitHub Apps). */
  refreshToken: z.string().optional(),
  /** Epoch ms: when `token` expires and must be refreshed. */
  tokenExpiresAt: z.number().optional(),
});
export type Session = z.infer<typeof Session>;

declare module 'hono' {
  interface ContextVariableMap {
    /** Set when the session changed during this request (renewed, or ended: null). */
    sessionThisRequest: Session | null;
  }
}

/**
 * Makes a session renewed during this request (or none, when it ended) the one the rest of the
 * request reads, instead of the cookie the browser sent.
 */
export function useSessionThisRequest(c: Context, session: Session | null): void {
  c.set('sessionThisRequest', session);
}

export const SESSION_COOKIE = 'airlock_session';
const SESSION_PURPOSE = 'session';

/** Cookie flags for everything airlock sets: HttpOnly, SameSite=Lax, Secure behind https. */
export function cookieOptions(publicUrl: string, maxAgeS: number) {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'Lax' as const,
    secure: publicUrl.startsWith('https:'),
    maxAge: maxAgeS,
  };
}

/** Reads and checks the session cookie: undefined when absent, forged, foreign or expired. */
export function readSession(c: Context, sealer: Sealer, clock: Clock): Session | undefined {
  const changed = c.get('sessionThisRequest');
  if (changed !== undefined)
    return changed && changed.expiresAt > clock.now().getTime() ? changed : undefined;
  const parsed = Session.safeParse(sealer.unseal(SESSION_PURPOSE, getCookie(c, SESSION_COOKIE)));
  if (!parsed.success || parsed.data.expiresAt <= clock.now().getTime()) return undefined;
  return parsed.data;
}

/** Sets the session cookie. */
export function writeSession(
  c: Context,
  sealer: Sealer,
  clock: Clock,
  session: Session,
  publicUrl: string,
): void {
  const maxAgeS = Math.max(1, Math.floor((session.expiresAt - clock.now().getTime()) / 1000));
  setCookie(c, SESSION_COOKIE, sealer.seal(SESSION_PURPOSE, session), cookieOptions(publicUrl, maxAgeS));
}

/** Removes the session cookie. */
export function clearSession(c: Context, publicUrl: string): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/', secure: publicUrl.startsWith('https:') });
}

const RETURN_FALLBACK = '/tasks';
// Tab, newline and the other controls: browsers drop some of them from a URL (`/\t/evil` becomes
// `//evil`), and in a header they would end it.
const CONTROL_OR_BACKSLASH = /[\u0000-\u001f\u007f\\]/;

/**
 * A same-origin path to return to after sign-in; anything else becomes /tasks. The value is read
 * the way a browser reads a Location header (WHATWG URL parsing, which drops tabs and newlines and
 * takes `\` for `/`), and refused if that lands anywhere but this origin, if it holds control
 * characters or backslashes, or if its path, encoded or not, starts with `//`.
 */
export function safeReturnPath(value: string | undefined): string {
  if (!value?.startsWith('/') || CONTROL_OR_BACKSLASH.test(value)) return RETURN_FALLBACK;
  const base = 'http://airlock.invalid';
  const url = URL.parse(value, base);
  if (!url || url.origin !== base) return RETURN_FALLBACK;
  let decodedPath: string;
  try {
    decodedPath = decodeURIComponent(url.pathname);
  } catch {
    return RETURN_FALLBACK;
  }
  if (decodedPath.startsWith('//') || CONTROL_OR_BACKSLASH.test(decodedPath)) return RETURN_FALLBACK;
  return `${url.pathname}${url.search}${url.hash}`;
}
