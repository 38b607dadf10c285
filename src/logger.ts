import { type Logger, pino } from 'pino';
import type { SecretRedactor } from './secrets.ts';

export type { Logger };

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  level?: string;
  redactor: SecretRedactor;
  /** Where lines go; defaults to stdout. Tests pass an in-memory stream. */
  destination?: { write(line: string): void };
}

/**
 * Builds the process logger: pino JSON lines, with known credential fields removed by path and every
 * registered secret value scrubbed from the finished line, so no call site has to remember to.
 */
export function createLogger(options: LoggerOptions): Logger {
  const out = options.destination ?? process.stdout;
  const redactor = options.redactor;
  return pino(
    {
      level: options.level ?? 'info',
      redact: {
        paths: [
          'token',
          '*.token',
          'headers.authorization',
          '*.headers.authorization',
          'privateKey',
          '*.privateKey',
          'apiKey',
          '*.apiKey',
        ],
        censor: '[REDACTED]',
      },
    },
    { write: (line: string) => out.write(redactor.scrub(line)) },
  );
}
