import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { appOctokit } from './octokit-factory.ts';

/** The first retry waits this long, doubling up to {@link MAX_DELAY_MS}. */
const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 60_000;

/** The app's identity as GitHub reports it, fetched in the background until GitHub answers. */
export interface AppIdentity {
  known(): boolean;
  /** The app's slug (`airlock` until GitHub has told it). */
  slug(): string;
  stop(): void;
}

/**
 * Asks GitHub who the app is (`GET /app`) and keeps asking, with back-off, until it answers: airlock
 * starts and stores webhooks while GitHub's API is unreachable, and says which setting and URL
 * failed. `onKnown` is called once the identity is known.
 */
export function appIdentity(options: {
  github: { appId: number; privateKey: string; apiUrl: string };
  log: Logger;
  clock: Clock;
  fetch?: typeof fetch;
  onKnown(): void;
}): AppIdentity {
  let slug: string | undefined;
  let stopped = false;
  let cancel: () => void = () => {};
  const octokit = appOctokit(options.github, {
    retries: 0,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const attempt = async (tries: number): Promise<void> => {
    try {
      const { data } = await octokit.rest.apps.getAuthenticated();
      slug = data?.slug ?? 'airlock';
      options.log.info({ app: slug }, 'GitHub App identity known');
      options.onKnown();
    } catch (error) {
      if (stopped) return;
      const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** tries);
      options.log.error(
        {
          err: errorMessage(error),
          url: `${options.github.apiUrl.replace(/\/$/, '')}/app`,
          retryInMs: delay,
        },
        'cannot reach GitHub as the app: check GITHUB_API_URL, APP_ID and PRIVATE_KEY; webhooks are stored meanwhile',
      );
      cancel = options.clock.after(delay, () => void attempt(tries + 1));
    }
  };
  void attempt(0);
  return {
    known: () => slug !== undefined,
    slug: () => slug ?? 'airlock',
    stop: () => {
      stopped = true;
      cancel();
    },
  };
}
