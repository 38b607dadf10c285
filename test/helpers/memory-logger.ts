import { createLogger, type Logger } from '../../src/logger.ts';
import { SecretRedactor } from '../../src/secrets.ts';

/** A logger that keeps its JSON lines in memory, for assertions on what was (not) logged. */
export function memoryLogger(redactor = new SecretRedactor()): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', redactor, destination: { write: (line) => lines.push(line) } });
  return { log, lines };
}
