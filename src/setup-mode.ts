import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { z } from 'zod';
import type { AppConfig } from './config/app-config.ts';
import { errorMessage, GitHubError } from './errors.ts';
import type { Logger } from './logger.ts';
import { appManifest } from './setup/app-manifest.ts';
import { updateEnvFile } from './setup/env-file.ts';
import { registrationFrame, registrationPage } from './setup/registration-page.ts';
import { html } from './web/html.ts';

const UNLOCK_COOKIE = 'airlock_registration';
const AppCredentials = z.object({
  id: z.number(),
  slug: z.string(),
  name: z.string(),
  html_url: z.url(),
  client_id: z.string(),
  client_secret: z.string(),
  webhook_secret: z.string().min(8),
  pem: z.string(),
});

/** A running registration server. */
export interface RegistrationServer {
  /** `http://host:port` as it listens. */
  origin: string;
  stop(): Promise<void>;
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

/**
 * Serves GitHub's manifest registration flow (from app.yml) when airlock has no app credentials:
 * a page that says what airlock is and asks for, a form that creates the app on GitHub, and the
 * return from GitHub that writes APP_ID, PRIVATE_KEY, WEBHOOK_SECRET, the OAuth client and a
 * session secret to .env, so that after a restart webhooks and sign-in both work.
 *
 * Whoever completes the flow decides whose app airlock trusts, so it listens on loopback unless
 * AIRLOCK_REGISTRATION_HOST says otherwise, and wherever it listens the flow opens only with a
 * one-time code printed on the console (inside the printed address, so the operator just opens
 * it): other users of the machine, or anyone beyond it, get a page asking for the code.
 */
export async function startRegistrationServer(
  config: Pick<AppConfig, 'port' | 'publicUrl' | 'registration'>,
  deps: { log: Logger; envFile?: string; fetch?: typeof fetch },
): Promise<RegistrationServer> {
  const { log } = deps;
  const envFile = deps.envFile ?? path.resolve('.env');
  const doFetch = deps.fetch ?? fetch;
  const { host, webUrl, apiUrl } = config.registration;
  const state = randomBytes(24).toString('base64url');
  // A code from the console, used once, then a cookie for that browser only.
  let oneTimeCode: string | undefined = randomBytes(12).toString('base64url');
  const unlockToken = randomBytes(24).toString('base64url');
  let done = false;

  const app = new Hono();
  const page = (title: string, body: ReturnType<typeof html>, status: 200 | 400 | 403 | 502 = 200) =>
    new Response(registrationFrame(title, body), {
      status,
      headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
    });

  app.use('*', async (c, next) => {
    c.header('x-frame-options', 'DENY');
    c.header('referrer-policy', 'no-referrer');
    if (equal(getCookie(c, UNLOCK_COOKIE), unlockToken)) return next();
    if (c.req.path === '/unlock') return next();
    if (c.req.path === '/' && c.req.query('code')) return unlock(c, c.req.query('code')!);
    return page(
      'Enter the registration code',
      html`<h1>Enter the registration code</h1>
<p>airlock is waiting to be registered as a GitHub App. To make sure it is you, enter the
one-time code that airlock printed on its console when it started (the address printed there
holds it too).</p>
<form class="inline" method="post" action="/unlock"><label for="code">Code:</label>
<input id="code" name="code" autocomplete="off" required><button type="submit">Continue</button></form>`,
      403,
    );
  });

  app.post('/unlock', async (c) => {
    const form = await c.req.parseBody();
    return unlock(c, typeof form.code === 'string' ? form.code.trim() : '');
  });

  const unlock = (c: Context, given: string) => {
    if (!oneTimeCode || !equal(given, oneTimeCode)) {
      log.warn('registration: a wrong or already used one-time code was entered');
      return page(
        'Wrong code',
        html`<h1>That code is not valid</h1><p>Check the code on airlock's console (it works once). <a href="/">Try again</a>.</p>`,
        403,
      );
    }
    oneTimeCode = undefined;
    setCookie(c, UNLOCK_COOKIE, unlockToken, {
      httpOnly: true,
      sameSite: 'Lax',
      path: '/',
      // As the browser reached this page: registration is often plain http on loopback even when
      // AIRLOCK_PUBLIC_URL is https, and a Secure cookie would then never come back.
      secure: new URL(c.req.url).protocol === 'https:',
    });
    log.info('registration: one-time code accepted; the flow is open to that browser only');
    return c.redirect('/', 303);
  };

  app.get('/', (c) => {
    if (done)
      return page(
        'Registered',
        html`<h1>airlock is registered</h1><p>Restart airlock to use the new app.</p>`,
      );
    const organization = c.req.query('org')?.trim() || undefined;
    if (organization && !/^[A-Za-z0-9][A-Za-z0-9-]{0,38}$/.test(organization)) {
      return page(
        'Not an organization name',
        html`<h1>That is not an organization name</h1><p><a href="/">Back</a></p>`,
        400,
      );
    }
    const origin = new URL(c.req.url).origin;
    const manifest = appManifest({ publicUrl: config.publicUrl, redirectUrl: `${origin}/setup/done` });
    const target = organization
      ? `${webUrl.replace(/\/$/, '')}/organizations/${organization}/settings/apps/new`
      : `${webUrl.replace(/\/$/, '')}/settings/apps/new`;
    return c.html(registrationPage({ manifest, createUrl: `${target}?state=${state}`, organization }));
  });
  // Probot's address for the same page, which older notes and bookmarks use.
  app.get('/probot', (c) => c.redirect('/', 302));

  app.get('/setup/done', async (c) => {
    if (!equal(c.req.query('state'), state)) {
      return page(
        'Registration not started here',
        html`<h1>This registration was not started here</h1><p><a href="/">Start again</a></p>`,
        400,
      );
    }
    const code = c.req.query('code');
    if (!code || !/^[\w-]+$/.test(code))
      return page('No code', html`<h1>GitHub sent no app code</h1><p><a href="/">Start again</a></p>`, 400);
    try {
      const created = await convertManifest(doFetch, apiUrl, code);
      updateEnvFile(envFile, {
        APP_ID: String(created.id),
        PRIVATE_KEY: created.pem,
        WEBHOOK_SECRET: created.webhook_secret,
        GITHUB_CLIENT_ID: created.client_id,
        GITHUB_CLIENT_SECRET: created.client_secret,
        AIRLOCK_SESSION_SECRET: randomBytes(32).toString('hex'),
        ...(apiUrl !== 'https://api.github.com' ? { GITHUB_API_URL: apiUrl, GITHUB_WEB_URL: webUrl } : {}),
      });
      done = true;
      log.info(
        { app: created.slug, envFile },
        'registration: GitHub App created and its credentials written; restart airlock to use it',
      );
      return page(
        'airlock is registered',
        html`<h1>airlock is registered as ${created.name}</h1>
<p>The app's credentials (and a key for the sign-in cookie) are in <code>${envFile}</code>.</p>
<ol><li>Restart airlock.</li>
<li><a href="${created.html_url}/installations/new">Install the app</a> on the repositories it should serve.</li>
<li>Sign in at <a href="${config.publicUrl.replace(/\/$/, '')}/tasks">${config.publicUrl.replace(/\/$/, '')}/tasks</a>.</li></ol>`,
      );
    } catch (error) {
      log.error({ err: errorMessage(error) }, 'registration: GitHub did not create the app');
      return page(
        'Registration failed',
        html`<h1>GitHub did not create the app</h1><p>${errorMessage(error)}</p><p><a href="/">Start again</a></p>`,
        502,
      );
    }
  });

  const server = createServer(getRequestListener(app.fetch));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  const shownHost = isLoopback(host) ? 'localhost' : host === '0.0.0.0' || host === '::' ? 'THIS-HOST' : host;
  log.info(
    { url: `http://${shownHost}:${port}/?code=${oneTimeCode}`, code: oneTimeCode },
    'no GitHub App credentials yet: open this address to register airlock as a GitHub App (the code in it works once)',
  );
  if (!isLoopback(host)) {
    log.warn(
      { host },
      'registration listens beyond this machine (AIRLOCK_REGISTRATION_HOST): only the one-time code above opens it',
    );
  }
  return {
    origin,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function convertManifest(doFetch: typeof fetch, apiUrl: string, code: string) {
  const response = await doFetch(`${apiUrl.replace(/\/$/, '')}/app-manifests/${code}/conversions`, {
    method: 'POST',
    headers: { accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' },
  });
  if (!response.ok) {
    throw new GitHubError(`GitHub answered ${response.status} to the app's creation code`, {
      status: response.status,
      hint: 'the code is valid for an hour and once: start the registration again',
    });
  }
  return AppCredentials.parse(await response.json());
}

function equal(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
