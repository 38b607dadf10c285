import { trace } from '@opentelemetry/api';
import { type Logger, pino } from 'pino';
import { prettyLogLine } from './pretty-log-line.ts';
import type { SecretRedactor } from './secrets.ts';

export type { Logger };

/** `pretty` for people at a terminal, `json` for log collectors. */
export type LogFormat = 'pretty' | 'json';

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  level?: string;
  redactor: SecretRedactor;
  /** Where lines go; defaults to stdout. Tests pass an in-memory stream. */
  destination?: { write(line: string): void; isTTY?: boolean };
  /** LOG_FORMAT; unset means pretty when the destination is a terminal, JSON otherwise. */
  format?: LogFormat | undefined;
}

/**
 * Builds the process logger: pino lines, with known credential fields removed by path and every
 * registered secret value scrubbed from the finished line, so no call site has to remember to.
 * Pretty lines are scrubbed again after formatting, since formatting unescapes JSON strings.
 */
export function createLogger(options: LoggerOptions): Logger {
  const out = options.destination ?? process.stdout;
  const redactor = options.redactor;
  const pretty = (options.format ?? (out.isTTY ? 'pretty' : 'json')) === 'pretty';
  const color = pretty && Boolean(out.isTTY) && !process.env.NO_COLOR;
  const write = pretty
    ? (line: string) => out.write(redactor.scrub(prettyLogLine(redactor.scrub(line), { color })))
    : (line: string) => out.write(redactor.scrub(line));
  return pino(
    {
      level: options.level ?? 'info',
      mixin: traceIds,
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
          'clientSecret',
          '*.clientSecret',
        ],
        censor: '[REDACTED]',
      },
    },
    { write },
  );
}

/**
 * The ids of the span active where a line is logged (`trace_id`, `span_id`), so a line can be found
 * from its trace and a trace from its lines; nothing when no span is active.
 */
function traceIds(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const ids = span.spanContext();
  return trace.isSpanContextValid(ids) ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
}
