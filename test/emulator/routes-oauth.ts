import { randomBytes } from 'node:crypto';
import { HttpError, tokenValueFromHeader } from './emulator-auth.ts';
import type { EmulatorState, Permission, User } from './emulator-state.ts';
import type { Answer } from './github-shapes.ts';
import { repoJson, userJson } from './json-shapes.ts';
import { covers, paginate, type Route, type RouteContext } from './route-kit.ts';

/** A user access token issued through the web flow (a GitHub App's user-to-server token). */
export interface UserToken {
  token: string;
  login: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  revoked: boolean;
  /** GitHub's refresh token for it (single use: spent once traded for a new token). */
  refreshToken: string;
  refreshSpent: boolean;
}

/** The emulator's OAuth side: who the browser is signed in to "GitHub" as, codes and user tokens. */
export interface EmulatorOAuth {
  /** The person the next authorization is granted to (GitHub's signed-in browser session). */
  signedInAs: string | undefined;
  readonly codes: Map<string, { login: string; clientId: string; redirectUri: string; expiresAt: number }>;
  readonly tokens: UserToken[];
  /** Signs the emulated browser in to GitHub as `login` (the user must exist). */
  signInAs(login: string): void;
  /** Revokes every token issued to `login` (as when a user revokes the app's authorization). */
  revokeTokens(login: string): void;
}

const oauthByState = new WeakMap<EmulatorState, EmulatorOAuth>();

/** The OAuth side of an emulator (created on first use). */
export function emulatorOAuth(state: EmulatorState): EmulatorOAuth {
  let oauth = oauthByState.get(state);
  if (!oauth) {
    const created: EmulatorOAuth = {
      signedInAs: undefined,
      codes: new Map(),
      tokens: [],
      signInAs(login) {
        if (!state.users.has(login)) throw new Error(`emulator: no user ${login}; addUser first`);
        created.signedInAs = login;
      },
      revokeTokens(login) {
        for (const t of created.tokens) if (t.login === login) t.revoked = true;
      },
    };
    oauth = created;
    oauthByState.set(state, oauth);
  }
  return oauth;
}

const USER_TOKEN_LIFETIME_S = 8 * 3600;
const REFRESH_TOKEN_LIFETIME_S = 184 * 24 * 3600;

/** Issues a user token with its refresh token, answered as GitHub answers an expiring-token app. */
function issueUserToken(oauth: EmulatorOAuth, login: string, now: number) {
  const token: UserToken = {
    token: `ghu_${randomBytes(18).toString('hex')}`,
    login,
    expiresAt: now + USER_TOKEN_LIFETIME_S * 1000,
    revoked: false,
    refreshToken: `ghr_${randomBytes(30).toString('hex')}`,
    refreshSpent: false,
  };
  oauth.tokens.push(token);
  return {
    body: {
      access_token: token.token,
      token_type: 'bearer',
      scope: '',
      expires_in: USER_TOKEN_LIFETIME_S,
      refresh_token: token.refreshToken,
      refresh_token_expires_in: REFRESH_TOKEN_LIFETIME_S,
    },
  };
}
const READ_ROLES: readonly Permission[] = ['read', 'triage', 'write', 'maintain', 'admin'];

function userFor(c: RouteContext): User {
  const value = tokenValueFromHeader(c.authorization);
  if (!value) throw new HttpError(401, 'Requires authentication');
  const token = emulatorOAuth(c.state).tokens.find((t) => t.token === value);
  if (!token || token.revoked || token.expiresAt <= c.state.now())
    throw new HttpError(401, 'Bad credentials');
  return c.state.user(token.login);
}

/**
 * GitHub's web application flow for a GitHub App (authorize → code → user access token), `GET /user`,
 * and `GET /user/installations/{id}/repositories`: the repositories of an installation that the
 * token's user has explicit access to, with their permissions, as GitHub documents it.
 */
export const oauthRoutes: Route[] = [
  [
    'GET',
    /^\/login\/oauth\/authorize$/,
    (c) => {
      const oauth = emulatorOAuth(c.state);
      const clientId = c.query.get('client_id');
      const redirectUri = c.query.get('redirect_uri');
      if (!clientId || clientId !== c.app.clientId)
        throw new HttpError(404, 'The client_id is not registered');
      if (!redirectUri) throw new HttpError(400, 'redirect_uri is required by this emulator');
      // GitHub skips its consent page once a user has authorized the app; so does the emulator.
      const login = oauth.signedInAs;
      if (!login)
        throw new HttpError(401, 'emulator: nobody is signed in; call emulatorOAuth(state).signInAs');
      const code = randomBytes(10).toString('hex');
      oauth.codes.set(code, { login, clientId, redirectUri, expiresAt: c.state.now() + 10 * 60_000 });
      const target = new URL(redirectUri);
      target.searchParams.set('code', code);
      const state = c.query.get('state');
      if (state !== null) target.searchParams.set('state', state);
      return { status: 302, headers: { location: target.toString() } };
    },
  ],
  [
    'POST',
    /^\/login\/oauth\/access_token$/,
    (c) => {
      const oauth = emulatorOAuth(c.state);
      const { client_id, client_secret, code, redirect_uri, grant_type, refresh_token } = c.body as Record<
        string,
        string | undefined
      >;
      // GitHub answers 200 with an `error` field when the exchange fails.
      if (!client_id || client_id !== c.app.clientId || client_secret !== c.app.clientSecret) {
        return {
          body: {
            error: 'incorrect_client_credentials',
            error_description: 'The client_id and/or client_secret passed are incorrect.',
          },
        };
      }
      if (grant_type === 'refresh_token') {
        const old = oauth.tokens.find((t) => t.refreshToken === refresh_token);
        if (!old || old.refreshSpent || old.revoked) {
          return {
            body: {
              error: 'bad_refresh_token',
              error_description: 'The refresh token passed is incorrect or expired.',
            },
          };
        }
        old.refreshSpent = true;
        return issueUserToken(oauth, old.login, c.state.now());
      }
      const grant = code ? oauth.codes.get(code) : undefined;
      if (code) oauth.codes.delete(code);
      if (!grant || grant.expiresAt <= c.state.now() || grant.clientId !== client_id) {
        return {
          body: {
            error: 'bad_verification_code',
            error_description: 'The code passed is incorrect or expired.',
          },
        };
      }
      if (redirect_uri !== undefined && redirect_uri !== grant.redirectUri) {
        return {
          body: { error: 'redirect_uri_mismatch', error_description: 'The redirect_uri does not match.' },
        };
      }
      return issueUserToken(oauth, grant.login, c.state.now());
    },
  ],
  ['GET', /^\/user$/, (c) => ({ body: userJson(userFor(c)) })],
  [
    'GET',
    /^\/user\/installations\/(\d+)\/repositories$/,
    (c) => {
      const user = userFor(c);
      const inst = c.state.installations.get(Number(c.params[0]));
      const role = (fullName: string) => c.state.permissions.get(`${fullName}:${user.login}`) ?? 'none';
      const repos = inst
        ? [...c.state.repos.values()].filter((r) => covers(inst, r) && READ_ROLES.includes(role(r.fullName)))
        : [];
      if (!inst || repos.length === 0) throw new HttpError(404, 'Not Found');
      const { page, headers } = paginate(c, `/user/installations/${inst.id}/repositories`, repos);
      return {
        headers,
        body: {
          total_count: repos.length,
          repositories: page.map((r) => {
            const level = role(r.fullName);
            const push = level === 'write' || level === 'maintain' || level === 'admin';
            return {
              ...repoJson(r, c.url, c.state),
              permissions: {
                admin: level === 'admin',
                maintain: level === 'maintain' || level === 'admin',
                push,
                triage: push || level === 'triage',
                pull: true,
              },
            };
          }),
        } satisfies Answer<'/user/installations/{installation_id}/repositories', 'get'>,
      };
    },
  ],
];
