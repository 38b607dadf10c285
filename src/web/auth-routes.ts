import { randomBytes, timingSafeEqual } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GitHubOAuth } from './github-oauth.ts';
import { html } from './html.ts';
import { layout, messagePage } from './layout.ts';
import type { RepoAccess } from './repo-access.ts';
import type { Sealer } from './session-sealer.ts';
import { clearSession, cookieOptions, readSession, safeReturnPath, writeSession } from './web-session.ts';

const SIGN_IN_COOKIE = 'airlock_signin';
const SIGN_IN_PURPOSE = 'sign-in';
const SIGN_IN_TTL_S = 600;
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
      const { token, expiresInS } = await deps.oauth.exchangeCode(code, callbackUrl(publicUrl));
      const user = await deps.oauth.user(token);
      const now = clock.now().getTime();
      const limit = now + deps.sessionHours * 3_600_000;
      const expiresAt = expiresInS ? Math.min(limit, now + expiresInS * 1000) : limit;
      writeSession(
        c,
        deps.sealer,
        clock,
        { login: user.login, userId: user.id, token, expiresAt },
        publicUrl,
      );
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
