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

const TokenAnswer = z.union([
  z.object({ access_token: z.string().min(1), expires_in: z.number().optional() }),
  z.object({ error: z.string(), error_description: z.string().optional() }),
]);
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
 * GitHub's web application flow for a GitHub App and the two questions airlock asks with the
 * resulting user token: who is this, and which repositories of an installation can they read.
 */
export class GitHubOAuth {
  readonly #o: GitHubOAuthOptions;
  readonly #fetch: typeof fetch;

  constructor(options: GitHubOAuthOptions) {
    this.#o = {
      ...options,
      webUrl: options.webUrl.replace(/\/$/, ''),
      apiUrl: options.apiUrl.replace(/\/$/, ''),
    };
    this.#fetch = options.fetch ?? fetch;
  }

  /** Where to send the browser to sign in. */
  authorizeUrl(redirectUri: string, state: string): string {
    const url = new URL(`${this.#o.webUrl}/login/oauth/authorize`);
    url.searchParams.set('client_id', this.#o.clientId);
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('state', state);
    url.searchParams.set('allow_signup', 'false');
    return url.toString();
  }

  /** Exchanges the callback's code for a user token. */
  async exchangeCode(
    code: string,
    redirectUri: string,
  ): Promise<{ token: string; expiresInS: number | undefined }> {
    const response = await this.#fetch(`${this.#o.webUrl}/login/oauth/access_token`, {
      method: 'POST',
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      body: JSON.stringify({
        client_id: this.#o.clientId,
        client_secret: this.#o.clientSecret,
        code,
        redirect_uri: redirectUri,
      }),
    });
    if (!response.ok) {
      throw new GitHubError(`GitHub refused the sign-in code exchange (HTTP ${response.status})`, {
        status: response.status,
        hint: 'check GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET',
      });
    }
    const answer = TokenAnswer.parse(await response.json());
    if ('error' in answer) {
      throw new GitHubError(`GitHub refused the sign-in: ${answer.error_description ?? answer.error}`, {
        hint:
          answer.error === 'incorrect_client_credentials'
            ? 'check GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET'
            : 'start the sign-in again',
      });
    }
    return { token: answer.access_token, expiresInS: answer.expires_in };
  }

  /** The person a user token belongs to. */
  async user(token: string): Promise<{ login: string; id: number }> {
    return GitHubUser.parse(await this.#get(token, '/user'));
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
        `/user/installations/${installationId}/repositories?per_page=100&page=${page}`,
        {
          notFound: { repositories: [] },
        },
      );
      const { repositories } = RepoPage.parse(body);
      repos.push(...repositories.map((r) => ({ id: r.id, fullName: r.full_name })));
      if (repositories.length < 100) break;
    }
    return repos;
  }

  async #get(token: string, path: string, options: { notFound?: unknown } = {}): Promise<unknown> {
    const response = await this.#fetch(`${this.#o.apiUrl}${path}`, {
      headers: {
        accept: 'application/vnd.github+json',
        authorization: `Bearer ${token}`,
        'x-github-api-version': '2022-11-28',
      },
    });
    if (response.status === 401) throw new UserTokenInvalid();
    if (response.status === 404 && options.notFound !== undefined) {
      await response.body?.cancel();
      return options.notFound;
    }
    if (!response.ok) {
      throw new GitHubError(`GitHub answered ${response.status} to GET ${path.split('?')[0]}`, {
        status: response.status,
      });
    }
    return response.json();
  }
}
