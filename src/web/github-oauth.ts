import { exchangeWebFlowCode, getWebFlowAuthorizationUrl, refreshToken } from '@octokit/oauth-methods';
import { request as octokitRequest } from '@octokit/request';
import { RequestError } from '@octokit/request-error';
import { z } from 'zod';
import { AirlockError, GitHubError } from '../errors.ts';

/** The user's token no longer works (expired or revoked): they must sign in again. */
export class UserTokenInvalid extends AirlockError {
  constructor() {
    super('user_token_invalid', 'GitHub no longer accepts this sign-in', { hint: 'sign in again' });
  }
}

/** Where and as what airlock talks OAuth to GitHub. */
export interface GitHubOAuthOptions {
  clientId: string;
  clientSecret: string;
  /** https://github.com, or the GHES host: where people sign in. */
  webUrl: string;
  /** https://api.github.com, or https://HOST/api/v3. */
  apiUrl: string;
  fetch?: typeof fetch;
}

/**
 * A user token and how long it lasts, as GitHub granted it. GitHub Apps with expiring user tokens
 * (the default) also give a refresh token; without expiry there is neither.
 */
export interface UserTokenGrant {
  token: string;
  expiresInS: number | undefined;
  refreshToken: string | undefined;
  refreshTokenExpiresInS: number | undefined;
}

// What GitHub's token endpoint answers, beyond what @octokit/oauth-methods types (expiry may be absent).
const TokenAnswer = z.object({
  access_token: z.string().min(1),
  expires_in: z.number().optional(),
  refresh_token: z.string().min(1).optional(),
  refresh_token_expires_in: z.number().optional(),
});
const GitHubUser = z.object({ login: z.string(), id: z.number() });
const RepoPage = z.object({
  repositories: z.array(z.object({ id: z.number(), full_name: z.string() })),
});

/** A repository a person can read, as GitHub listed it. */
export interface ReadableRepo {
  id: number;
  fullName: string;
}

/**
 * GitHub's web application flow for a GitHub App (through @octokit/oauth-methods: authorize, code
 * exchange, token refresh) and the two questions airlock asks with the resulting user token: who
 * is this, and which repositories of an installation can they read.
 */
export class GitHubOAuth {
  readonly #o: GitHubOAuthOptions;
  /** Requests to the sign-in host (github.com or GHES), where the token endpoint lives. */
  readonly #web: typeof octokitRequest;
  /** Requests to the REST API. */
  readonly #api: typeof octokitRequest;

  constructor(options: GitHubOAuthOptions) {
    this.#o = options;
    const fetchOption = options.fetch ? { request: { fetch: options.fetch } } : {};
    this.#web = octokitRequest.defaults({ baseUrl: options.webUrl.replace(/\/$/, ''), ...fetchOption });
    this.#api = octokitRequest.defaults({
      baseUrl: options.apiUrl.replace(/\/$/, ''),
      headers: { 'x-github-api-version': '2022-11-28' },
      ...fetchOption,
    });
  }

  /** Where to send the browser to sign in. */
  authorizeUrl(redirectUri: string, state: string): string {
    return getWebFlowAuthorizationUrl({
      clientType: 'github-app',
      clientId: this.#o.clientId,
      redirectUrl: redirectUri,
      state,
      allowSignup: false,
      request: this.#web,
    }).url;
  }

  /** Exchanges the callback's code for a user token. */
  async exchangeCode(code: string, redirectUri: string): Promise<UserTokenGrant> {
    try {
      const { data } = await exchangeWebFlowCode({
        clientType: 'github-app',
        clientId: this.#o.clientId,
        clientSecret: this.#o.clientSecret,
        code,
        redirectUrl: redirectUri,
        request: this.#web,
      });
      return grant(data);
    } catch (error) {
      throw refusal(error, 'GitHub refused the sign-in');
    }
  }

  /**
   * Trades a refresh token for a new user token (and a new refresh token: GitHub's are single-use).
   * A refresh token GitHub no longer accepts is {@link UserTokenInvalid}.
   */
  async refresh(token: string): Promise<UserTokenGrant> {
    try {
      const { data } = await refreshToken({
        clientType: 'github-app',
        clientId: this.#o.clientId,
        clientSecret: this.#o.clientSecret,
        refreshToken: token,
        request: this.#web,
      });
      return grant(data);
    } catch (error) {
      const code = oauthErrorCode(error);
      if (code === 'bad_refresh_token' || code === 'unauthorized') throw new UserTokenInvalid();
      throw refusal(error, 'GitHub refused to renew the sign-in');
    }
  }

  /** The person a user token belongs to. */
  async user(token: string): Promise<{ login: string; id: number }> {
    return GitHubUser.parse(await this.#get(token, 'GET /user', {}));
  }

  /**
   * Every repository of the installation that the token's user can read, as GitHub lists it
   * (`GET /user/installations/{id}/repositories`, all pages). No access to the installation at all
   * is an empty list.
   */
  async readableRepos(token: string, installationId: number): Promise<ReadableRepo[]> {
    const repos: ReadableRepo[] = [];
    for (let page = 1; page <= 100; page++) {
      const body = await this.#get(
        token,
        'GET /user/installations/{installation_id}/repositories',
        { installation_id: installationId, per_page: 100, page },
        { notFound: { repositories: [] } },
      );
      const { repositories } = RepoPage.parse(body);
      repos.push(...repositories.map((r) => ({ id: r.id, fullName: r.full_name })));
      if (repositories.length < 100) break;
    }
    return repos;
  }

  async #get(
    token: string,
    route: string,
    parameters: Record<string, unknown>,
    options: { notFound?: unknown } = {},
  ): Promise<unknown> {
    try {
      const response = await this.#api(route, {
        ...parameters,
        headers: { authorization: `bearer ${token}` },
      });
      return response.data;
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      if (error.status === 401) throw new UserTokenInvalid();
      if (error.status === 404 && options.notFound !== undefined) return options.notFound;
      throw new GitHubError(`GitHub answered ${error.status} to ${route.replace(/\{.*$/, '…')}`, {
        status: error.status,
        cause: error,
      });
    }
  }
}

function grant(data: unknown): UserTokenGrant {
  const answer = TokenAnswer.parse(data);
  return {
    token: answer.access_token,
    expiresInS: answer.expires_in,
    refreshToken: answer.refresh_token,
    refreshTokenExpiresInS: answer.refresh_token_expires_in,
  };
}

/** GitHub's OAuth error code (`bad_verification_code`, …), which it sends with HTTP 200. */
function oauthErrorCode(error: unknown): string | undefined {
  if (!(error instanceof RequestError)) return undefined;
  const data = error.response?.data as { error?: unknown } | undefined;
  return typeof data?.error === 'string' ? data.error : undefined;
}

function refusal(error: unknown, what: string): GitHubError {
  const code = oauthErrorCode(error);
  const data =
    error instanceof RequestError ? (error.response?.data as { error_description?: unknown }) : undefined;
  const status = error instanceof RequestError ? error.status : undefined;
  const detail =
    typeof data?.error_description === 'string'
      ? data.error_description
      : (code ?? (status ? `HTTP ${status}` : String((error as Error).message)));
  return new GitHubError(`${what}: ${detail}`, {
    cause: error,
    ...(status ? { status } : {}),
    hint:
      code === 'incorrect_client_credentials' || status === 401 || status === 404
        ? 'check GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET'
        : 'start the sign-in again',
  });
}
