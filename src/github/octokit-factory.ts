import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import Bottleneck from 'bottleneck';
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
  /**
   * Least time between two writes, and between two writes that notify people (comments, PRs), in
   * ms. GitHub asks for 1 s and 3 s, which the throttling plugin keeps by default; the emulator has
   * no such limit, so its tests set both to 0.
   */
  writeSpacingMs?: { write: number; notifications: number };
  fetch?: typeof fetch;
}

const spacedLimiters = new Map<string, { write: Bottleneck.Group; notifications: Bottleneck.Group }>();

/**
 * The throttling plugin's write limiters for `writeSpacingMs` (none: the plugin's own, 1 s and 3 s).
 * Like the plugin's, they are shared by every Octokit of the process with the same spacing.
 */
function writeLimiters(tuning: OctokitTuning): {
  write?: Bottleneck.Group;
  notifications?: Bottleneck.Group;
} {
  const spacing = tuning.writeSpacingMs;
  if (!spacing) return {};
  const key = `${spacing.write}/${spacing.notifications}`;
  let limiters = spacedLimiters.get(key);
  if (!limiters) {
    limiters = {
      write: new Bottleneck.Group({ maxConcurrent: 1, minTime: spacing.write }),
      notifications: new Bottleneck.Group({ maxConcurrent: 1, minTime: spacing.notifications }),
    };
    spacedLimiters.set(key, limiters);
  }
  return limiters;
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
      ...writeLimiters(tuning),
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
      ...writeLimiters(tuning),
      onRateLimit: (_r: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
      onSecondaryRateLimit: (_r: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
    },
  });
}
