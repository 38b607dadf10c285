// Process entry: no logic here.
import { startAirlock } from './app.ts';
import { errorMessage } from './errors.ts';

startAirlock(process.env).catch((error: unknown) => {
  process.stderr.write(`airlock: ${errorMessage(error)}\n`);
  process.exit(1);
});
