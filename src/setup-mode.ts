import { run } from 'probot';
import type { Logger } from './logger.ts';

/**
 * Serves GitHub's manifest registration flow (from app.yml) when airlock has no app credentials:
 * open the printed URL, create the app on GitHub, and Probot writes APP_ID, PRIVATE_KEY and
 * WEBHOOK_SECRET to .env; restart airlock to use them.
 */
export async function startRegistrationServer(options: {
  host: string;
  port: number;
  log: Logger;
  /** Where GitHub should send webhooks once the app exists. */
  webhookUrl: string;
  githubHost?: string;
}): Promise<{ stop(): Promise<void> }> {
  // Probot's setup flow would otherwise try to create a smee.io channel (no egress assumed here).
  process.env.NO_SMEE_SETUP = 'true';
  process.env.WEBHOOK_PROXY_URL = options.webhookUrl;
  const env: Record<string, string> = { HOST: options.host, PORT: String(options.port) };
  if (options.githubHost) env.GHE_HOST = options.githubHost;
  const server = await run(() => {}, { env, log: options.log.child({ name: 'setup' }) });
  options.log.info(
    { url: `http://${options.host === '0.0.0.0' ? 'localhost' : options.host}:${options.port}/probot` },
    'no GitHub App credentials: open this URL to register airlock as a GitHub App (reads app.yml), then restart',
  );
  return { stop: async () => void (await server.stop()) };
}
