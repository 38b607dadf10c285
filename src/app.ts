import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { buildAirlock } from './airlock.ts';
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
 * Starts airlock from an environment: validates settings, then builds it (see buildAirlock). With
 * no GitHub App credentials it serves the registration flow instead.
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
    config.cluster.workerSecret,
    databasePassword(config.databaseUrl),
    // OTLP headers carry a trace backend's API key.
    ...Object.values(config.tracing.headers),
  ]) {
    if (secret && secret.length >= 8) redactor.add(secret);
  }
  const log = createLogger({ level: config.logLevel, format: config.logFormat, redactor });

  if (!config.github && config.role !== 'worker') {
    const server = await startRegistrationServer(config, { log });
    return { config, log, stop: server.stop };
  }
  const airlock = await buildAirlock(config, { log, redactor, environment: env });
  if (config.role === 'worker')
    log.info(
      { role: 'worker', worker: config.cluster.workerName, controlUrl: config.cluster.controlUrl },
      'airlock is running',
    );
  else
    log.info(
      {
        role: config.role,
        port: airlock.github?.server.port,
        webhooks: `${config.publicUrl}/api/github/webhooks`,
        ...(airlock.internal ? { internalPort: airlock.internal.port } : {}),
      },
      'airlock is running',
    );
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping: cancelling running tasks, destroying their VMs, revoking their tokens');
      airlock.stop().then(() => process.exit(0));
    });
  }
  return { config, log, stop: airlock.stop };
}

/** The password in a PostgreSQL URL, if it has one (kept out of every log line). */
function databasePassword(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}

function readDotEnv(file: string): Record<string, string> {
  const full = path.resolve(file);
  if (!existsSync(full)) return {};
  return parseEnv(readFileSync(full, 'utf8')) as Record<string, string>;
}
