// airlock in its own process, for kill -9 tests. Its runner double never finishes, so the task it
// starts stays "running" until the process is killed.
import { buildAirlock } from '../../src/airlock.ts';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { memoryLogger } from './memory-logger.ts';
import { emulatorOctokit } from './test-settings.ts';

const env = process.env as Record<string, string>;
const airlock = await buildAirlock(
  loadAppConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    AIRLOCK_PUBLIC_URL: 'http://airlock.test',
    AIRLOCK_DATA_DIR: env.DATA_DIR,
    APP_ID: env.APP_ID,
    PRIVATE_KEY: env.PRIVATE_KEY,
    WEBHOOK_SECRET: env.WEBHOOK_SECRET,
    GITHUB_API_URL: env.API_URL,
  }),
  {
    log: memoryLogger().log,
    redactor: new SecretRedactor(),
    runner: {
      run: async (_task, ctx) => {
        await ctx.enterPhase('running');
        return new Promise(() => {});
      },
    },
    octokit: emulatorOctokit,
    pollMs: 50,
  },
);
process.stdout.write(`${JSON.stringify({ port: airlock.github?.server.port })}\n`);
