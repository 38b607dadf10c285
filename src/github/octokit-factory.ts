import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Logger } from '../logger.ts';

/** Octokit with retries (5xx) and throttling (primary and secondary rate limits). */
export const AirlockOctokit = Octokit.plugin(retry, throttling);
export type AirlockOctokit = InstanceType<typeof AirlockOctokit>;

/** What it takes to talk to GitHub as the app. */
export interface GitHubAppCredentials {
  appId: number;
  privateKey: string;
  apiUrl: string;
}

/** Tuning for tests and for GitHub Enterprise instances with different limits. */
export interface OctokitTuning {
  /** Base unit of retry back-off, in ms (GitHub's plugins default to 1000). */
  retryBaseMs?: number;
  /** Retries for 5xx answers. */
  retries?: number;
  fetch?: typeof fetch;
}

/**
 * Builds an Octokit authenticated as one installation of the app (tokens minted and refreshed by
 * @octokit/auth-app), with retry and throttling plugins so transient failures are retried with
 * back-off before anything gives up.
 */
export function installationOctokit(
  credentials: GitHubAppCredentials,
  installationId: number,
  log: Logger,
  tuning: OctokitTuning = {},
): AirlockOctokit {
  return new AirlockOctokit({
    baseUrl: credentials.apiUrl,
    authStrategy: createAppAuth,
    auth: { appId: credentials.appId, privateKey: credentials.privateKey, installationId },
    request: tuning.fetch ? { fetch: tuning.fetch } : {},
    retry: { retryAfterBaseValue: tuning.retryBaseMs ?? 1000, retries: tuning.retries ?? 3 },
    throttle: {
      retryAfterBaseValue: tuning.retryBaseMs ?? 1000,
      fallbackSecondaryRateRetryAfter: 60,
      onRateLimit: (
        retryAfter: number,
        options: { method: string; url: string },
        _o: unknown,
        retryCount: number,
      ) => {
        log.warn({ retryAfter, url: options.url, retryCount }, 'GitHub rate limit hit');
        return retryCount < 2;
      },
      onSecondaryRateLimit: (
        retryAfter: number,
        options: { method: string; url: string },
        _o: unknown,
        retryCount: number,
      ) => {
        log.warn({ retryAfter, url: options.url, retryCount }, 'GitHub secondary rate limit hit');
        return retryCount < 2;
      },
    },
    log: {
      debug: () => {},
      info: () => {},
      warn: (message: string) => log.warn(message),
      // Failed requests also reach their callers, which decide what they mean: a 404 is usually
      // an answer (no .github/airlock.yml, a deleted comment), not a fault.
      error: (message: string) => (/ - 404 with id /.test(message) ? log.debug(message) : log.warn(message)),
    },
  });
}

/** Builds an Octokit authenticated as the app itself (JWT), for /app and installation look-ups. */
export function appOctokit(credentials: GitHubAppCredentials, tuning: OctokitTuning = {}): AirlockOctokit {
  return new AirlockOctokit({
    baseUrl: credentials.apiUrl,
    authStrategy: createAppAuth,
    auth: { appId: credentials.appId, privateKey: credentials.privateKey },
    request: tuning.fetch ? { fetch: tuning.fetch } : {},
    retry: { retryAfterBaseValue: tuning.retryBaseMs ?? 1000, retries: tuning.retries ?? 3 },
    throttle: {
      retryAfterBaseValue: tuning.retryBaseMs ?? 1000,
      onRateLimit: (_r: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
      onSecondaryRateLimit: (_r: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
    },
  });
}
