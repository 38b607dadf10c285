import { type AppConfig, loadAppConfig } from '../../src/config/app-config.ts';
import type { GitHubEmulator } from '../emulator/index.ts';

/**
 * Settings for an airlock that talks to the GitHub emulator, read through the same loader as
 * production's environment: loopback on port 0, data under `dataDir`, `extra` for the rest.
 */
export function emulatorSettings(
  gh: GitHubEmulator,
  dataDir: string,
  extra: Record<string, string | undefined> = {},
): AppConfig {
  return loadAppConfig(emulatorEnv(gh, dataDir, extra));
}

/** The environment variables behind emulatorSettings, for an airlock process of its own. */
export function emulatorEnv(
  gh: GitHubEmulator,
  dataDir: string,
  extra: Record<string, string | undefined> = {},
): Record<string, string> {
  const env: Record<string, string | undefined> = {
    HOST: '127.0.0.1',
    PORT: '0',
    AIRLOCK_PUBLIC_URL: 'http://airlock.test',
    AIRLOCK_DATA_DIR: dataDir,
    APP_ID: String(gh.app.id),
    PRIVATE_KEY: gh.app.privateKey,
    WEBHOOK_SECRET: gh.app.webhookSecret,
    GITHUB_API_URL: gh.apiUrl,
    GITHUB_WEB_URL: gh.webUrl,
    AIRLOCK_ACCEL: 'tcg',
    ...extra,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/**
 * Octokit tuning against the emulator: short retry back-offs, and no spacing between writes (GitHub
 * asks for 1 s between writes and 3 s between comments; the emulator has no such limit). Retries
 * and rate-limit handling stay on.
 */
export const emulatorOctokit = { retryBaseMs: 5, writeSpacingMs: { write: 0, notifications: 0 } };
