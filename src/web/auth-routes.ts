import { randomBytes, timingSafeEqual } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type GitHubOAuth, type UserTokenGrant, UserTokenInvalid } from './github-oauth.ts';
import { html } from './html.ts';
import { layout, messagePage } from './layout.ts';
import type { RepoAccess } from './repo-access.ts';
import type { Sealer } from './session-sealer.ts';
import {
  clearSession,
  cookieOptions,
  readSession,
  type Session,
  safeReturnPath,
  useSessionThisRequest,
  writeSession,
} from './web-session.ts';

const SIGN_IN_COOKIE = 'airlock_signin';
const SIGN_IN_PURPOSE = 'sign-in';
const SIGN_IN_TTL_S = 600;
// Renew a little early, so a request never reaches GitHub with a token that expires on the way.
const RENEW_BEFORE_MS = 5 * 60_000;
const RENEWAL_SHARED_MS = 60_000;
const SignIn = z.object({ state: z.string(), returnTo: z.string(), expiresAt: z.number() });

/** What sign-in needs; undefined `oauth` means sign-in is not configured. */
export interface AuthDeps {
  oauth: GitHubOAuth | undefined;
  sealer: Sealer | undefined;
  access: RepoAccess | undefined;
  clock: Clock;
  log: Logger;
  publicUrl: string;
  sessionHours: number;
}

/**
 * The token fields of a session from GitHub's grant. Without a refresh token the sign-in cannot
 * outlive its token; with one it lasts until `limit`, or the refresh token's end if sooner.
 */
export function sessionFromGrant(
  grant: UserTokenGrant,
  now: number,
  limit: number,
): Pick<Session, 'token' | 'expiresAt' | 'refreshToken' | 'tokenExpiresAt'> {
  const tokenExpiresAt = grant.expiresInS === undefined ? undefined : now + grant.expiresInS * 1000;
  const end = grant.refreshToken
    ? grant.refreshTokenExpiresInS === undefined
      ? limit
      : now + grant.refreshTokenExpiresInS * 1000
    : (tokenExpiresAt ?? limit);
  return {
    token: grant.token,
    expiresAt: Math.min(limit, end),
    ...(grant.refreshToken ? { refreshToken: grant.refreshToken } : {}),
    ...(tokenExpiresAt === undefined ? {} : { tokenExpiresAt }),
  };
}

/** The callback GitHub redirects to; register it as the GitHub App's callback URL. */
export function callbackUrl(publicUrl: string): string {
  return `${publicUrl.replace(/\/$/, '')}/auth/github/callback`;
}

/**
 * Sign-in with GitHub (the app's OAuth credentials): /login starts it with a random `state` kept
 * in a sealed, short-lived cookie; /auth/github/callback checks that state, exchanges the code,
 * asks GitHub who the person is, and sets the sealed session cookie. POST /logout ends it.
 */
export function authRoutes(deps: AuthDeps): Hono {
  const app = new Hono();
  const { clock, publicUrl } = deps;

  // The settings are the operator's business: people who try to sign in get a plain message, and
  // the log (once) says what to set.
  let operatorTold = false;
  const notSetUp = (c: Context) => {
    if (!operatorTold) {
      operatorTold = true;
      deps.log.warn(
        'someone tried to sign in, but sign-in is not configured: set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET (from the GitHub App settings page) and AIRLOCK_SESSION_SECRET (openssl rand -hex 32), then restart airlock; see docs/install.md',
      );
    }
    return c.html(
      layout({
        title: 'Sign-in is not available',
        body: html`<h1>Sign-in is not available</h1>
<p>This airlock is not set up for signing in with GitHub yet. The person who runs it can find out why in its log.</p>`,
      }).value,
      503,
    );
  };

  // A user token about to expire is renewed before the request uses it. Renewals are shared per
  // refresh token for a minute: GitHub's refresh tokens work once, and a page and its live stream
  // arrive together with the same cookie.
  const renewals = new Map<string, { at: number; grant: Promise<UserTokenGrant> }>();
  app.use('*', async (c, next) => {
    const { oauth, sealer } = deps;
    const session = oauth && sealer ? readSession(c, sealer, clock) : undefined;
    const now = clock.now().getTime();
    if (
      !oauth ||
      !sealer ||
      !session?.refreshToken ||
      session.tokenExpiresAt === undefined ||
      session.tokenExpiresAt - RENEW_BEFORE_MS > now
    ) {
      return next();
    }
    for (const [key, renewal] of renewals) if (renewal.at + RENEWAL_SHARED_MS < now) renewals.delete(key);
    let renewal = renewals.get(session.refreshToken);
    if (!renewal) {
      renewal = { at: now, grant: oauth.refresh(session.refreshToken) };
      renewals.set(session.refreshToken, renewal);
    }
    try {
      const grant = await renewal.grant;
      const renewed = { ...session, ...sessionFromGrant(grant, now, session.expiresAt) };
      writeSession(c, sealer, clock, renewed, publicUrl);
      useSessionThisRequest(c, renewed);
      deps.log.debug({ login: session.login }, 'renewed the GitHub user token of a sign-in');
    } catch (error) {
      if (!(error instanceof UserTokenInvalid)) {
        // GitHub did not answer: the old token is tried, and the next request asks again.
        renewals.delete(session.refreshToken);
        deps.log.warn({ err: errorMessage(error), login: session.login }, 'could not renew a sign-in');
      } else {
        deps.log.info({ login: session.login }, 'GitHub no longer renews this sign-in: signed out');
        clearSession(c, publicUrl);
        useSessionThisRequest(c, null);
      }
    }
    return next();
  });

  app.get('/login', (c) => {
    if (!deps.oauth || !deps.sealer) return notSetUp(c);
    const state = randomBytes(24).toString('base64url');
    const returnTo = safeReturnPath(c.req.query('return_to'));
    const sealed = deps.sealer.seal(SIGN_IN_PURPOSE, {
      state,
      returnTo,
      expiresAt: clock.now().getTime() + SIGN_IN_TTL_S * 1000,
    });
    setCookie(c, SIGN_IN_COOKIE, sealed, cookieOptions(publicUrl, SIGN_IN_TTL_S));
    return c.redirect(deps.oauth.authorizeUrl(callbackUrl(publicUrl), state), 302);
  });

  app.get('/auth/github/callback', async (c) => {
    if (!deps.oauth || !deps.sealer) return notSetUp(c);
    const pending = SignIn.safeParse(deps.sealer.unseal(SIGN_IN_PURPOSE, getCookie(c, SIGN_IN_COOKIE)));
    deleteCookie(c, SIGN_IN_COOKIE, { path: '/', secure: publicUrl.startsWith('https:') });
    // Back to where the person was going, when the cookie still says where that was.
    const restart = pending.success
      ? `/login?return_to=${encodeURIComponent(pending.data.returnTo)}`
      : '/login';
    const fail = (message: string, status: 400 | 502 = 400) =>
      c.html(
        messagePage('Sign-in failed', `${message} You can start again.`, undefined, {
          href: restart,
          text: 'Sign in again',
        }).value,
        status,
      );
    const state = c.req.query('state') ?? '';
    const code = c.req.query('code');
    if (!pending.success || pending.data.expiresAt <= clock.now().getTime()) {
      return fail('The sign-in took too long or was started in another browser.');
    }
    const expected = Buffer.from(pending.data.state);
    const given = Buffer.from(state);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      deps.log.warn('sign-in callback with a state that does not match its cookie: refused');
      return fail('The sign-in could not be matched to this browser.');
    }
    if (!code) return fail(c.req.query('error_description') ?? 'GitHub did not grant the sign-in.');
    try {
      const grant = await deps.oauth.exchangeCode(code, callbackUrl(publicUrl));
      const user = await deps.oauth.user(grant.token);
      const now = clock.now().getTime();
      const session = sessionFromGrant(grant, now, now + deps.sessionHours * 3_600_000);
      writeSession(c, deps.sealer, clock, { login: user.login, userId: user.id, ...session }, publicUrl);
      deps.log.info({ login: user.login }, 'signed in');
      return c.redirect(pending.data.returnTo, 302);
    } catch (error) {
      deps.log.warn({ err: errorMessage(error) }, 'sign-in failed');
      return fail(`GitHub did not complete the sign-in: ${errorMessage(error)}.`, 502);
    }
  });

  app.post('/logout', (c) => {
    const session = deps.sealer ? readSession(c, deps.sealer, clock) : undefined;
    if (session) deps.access?.forget(session.userId);
    clearSession(c, publicUrl);
    return c.redirect('/signed-out', 303);
  });

  // Not /login: GitHub would sign the person straight back in.
  app.get('/signed-out', (c) =>
    c.html(
      messagePage('Signed out', 'You are signed out of airlock (not of GitHub).', undefined, {
        href: '/login',
        text: 'Sign in again',
      }).value,
    ),
  );

  return app;
}
