import { parseArgs } from 'node:util';
import { startAirlock } from '../app.ts';
import type { AppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';

/**
 * `airlock worker` and `airlock control`: airlock in one of its roles on a shared PostgreSQL
 * database, as `npm start` with AIRLOCK_ROLE set. Runs until SIGTERM or SIGINT, which stop it
 * cleanly (its tasks cancelled or handed back) and end the process.
 */
function roleCommand(role: Exclude<AppConfig['role'], 'all'>) {
  return async (args: string[]): Promise<number> => {
    parseArgs({ args, options: {} });
    if (process.env.AIRLOCK_ROLE && process.env.AIRLOCK_ROLE !== role)
      throw new AirlockError(
        'usage',
        `AIRLOCK_ROLE is ${process.env.AIRLOCK_ROLE} in this environment, but \`airlock ${role}\` runs the ${role} role: unset it, or use npm start`,
      );
    await startAirlock({ ...process.env, AIRLOCK_ROLE: role });
    return new Promise<number>(() => {});
  };
}

export const worker = roleCommand('worker');
export const control = roleCommand('control');
