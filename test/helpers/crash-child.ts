// A control plane in its own process, for kill -9 tests. Its runner double never finishes, so the
// task it starts stays "running" until the process is killed.
import path from 'node:path';
import { systemClock } from '../../src/clock.ts';
import { startControlPlane } from '../../src/control-plane.ts';
import { openDatabase } from '../../src/store/database.ts';
import { startHttpServer } from '../../src/web/http-server.ts';
import { memoryLogger } from './memory-logger.ts';
import { RecordingAudit } from './recording-audit.ts';

const env = process.env as Record<string, string>;
const plane = await startControlPlane({
  db: openDatabase(path.join(env.DATA_DIR!, 'airlock.sqlite')),
  clock: systemClock,
  log: memoryLogger().log,
  audit: new RecordingAudit(),
  github: {
    appId: Number(env.APP_ID),
    privateKey: env.PRIVATE_KEY!,
    webhookSecret: env.WEBHOOK_SECRET!,
    apiUrl: env.API_URL!,
    appSlug: env.APP_SLUG!,
  },
  publicUrl: 'http://airlock.test',
  runner: {
    run: (_task, ctx) =>
      new Promise(() => {
        ctx.enterPhase('running');
      }),
  },
  reaper: { reapOrphans: async () => [] },
  limits: { maxConcurrent: 2, maxPerRepo: 1 },
  octokitTuning: { retryBaseMs: 5 },
  pollMs: 50,
});
const server = await startHttpServer({ host: '127.0.0.1', port: 0, webhooks: plane.webhooks });
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
