import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { type AppConfig, loadAppConfig } from './config/app-config.ts';
import { createLogger, type Logger } from './logger.ts';
import { SecretRedactor } from './secrets.ts';
import { startRegistrationServer } from './setup-mode.ts';

/** A running airlock, for graceful shutdown and tests. */
export interface RunningAirlock {
  config: AppConfig;
  log: Logger;
  stop(): Promise<void>;
}

/**
 * The composition root: validates settings, then builds every part from them and wires them
 * together. With no GitHub App credentials it serves the registration flow instead.
 */
export async function startAirlock(environment: Record<string, string | undefined>): Promise<RunningAirlock> {
  const env = { ...readDotEnv('.env'), ...environment };
  const config = loadAppConfig(env);
  const redactor = new SecretRedactor();
  for (const secret of [
    config.github?.webhookSecret,
    config.models.anthropicApiKey,
    config.models.openaiApiKey,
    config.adminToken,
    config.github?.clientSecret,
    config.web.sessionSecret,
  ]) {
    if (secret && secret.length >= 8) redactor.add(secret);
  }
  const log = createLogger({ level: config.logLevel, format: config.logFormat, redactor });

  if (!config.github) {
    const server = await startRegistrationServer(config, { log });
    return { config, log, stop: server.stop };
  }
  const { startFullAirlock } = await import('./full-airlock.ts');
  return startFullAirlock(config, { log, redactor });
}

function readDotEnv(file: string): Record<string, string> {
  const full = path.resolve(file);
  if (!existsSync(full)) return {};
  return parseEnv(readFileSync(full, 'utf8')) as Record<string, string>;
}
