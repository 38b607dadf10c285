import { describe, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { createLogger, type LogFormat } from '../../src/logger.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { withSpan } from '../../src/tracing/trace-parent.ts';
import { idOnlyTracer } from '../helpers/test-tracer.ts';

function capture(options: { format?: LogFormat; isTTY?: boolean; redactor?: SecretRedactor }) {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    redactor: options.redactor ?? new SecretRedactor(),
    format: options.format,
    destination: { write: (line) => lines.push(line), isTTY: options.isTTY ?? false },
  });
  return { log, lines };
}

describe('log format', () => {
  it('is JSON when not on a terminal, pretty on one, and LOG_FORMAT decides either way', () => {
    const plain = capture({});
    plain.log.info('hello');
    expect(JSON.parse(plain.lines[0]!)).toMatchObject({ msg: 'hello', level: 30 });

    const tty = capture({ isTTY: true });
    tty.log.info('hello');
    expect(tty.lines[0]).toMatch(/INFO.*hello/);
    expect(() => JSON.parse(tty.lines[0]!)).toThrow();

    const forcedJson = capture({ isTTY: true, format: 'json' });
    forcedJson.log.info('hello');
    expect(JSON.parse(forcedJson.lines[0]!)).toMatchObject({ msg: 'hello' });

    const forcedPretty = capture({ format: 'pretty' });
    forcedPretty.log.info('hello');
    expect(forcedPretty.lines[0]).toMatch(/INFO.*hello/);
  });

  it('writes one readable line: local time (no epoch milliseconds), level, name, message, fields', () => {
    const { log, lines } = capture({ format: 'pretty' });
    log
      .child({ name: 'setup' })
      .warn({ taskId: 't1', repo: 'acme/widgets', note: 'two words' }, 'task refused');
    const line = lines[0]!;
    expect(line).toMatch(
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WARN {2}\[setup\] task refused taskId=t1 repo=acme\/widgets note="two words"\n$/,
    );
    expect(line).not.toMatch(/\d{13}/);
    expect(line).not.toContain('pid=');
  });

  it('prints an error with its stack on the following lines', () => {
    const { log, lines } = capture({ format: 'pretty' });
    log.error({ err: new Error('disk full') }, 'could not write');
    expect(lines[0]).toMatch(/ERROR could not write\n {4}Error: disk full\n {4}\s*at /);
  });

  it('redacts secrets in pretty lines as in JSON ones: by value, by pattern and by field', () => {
    for (const format of ['pretty', 'json'] as const) {
      const redactor = new SecretRedactor();
      redactor.add('super-secret-model-key');
      const { log, lines } = capture({ format, redactor });
      log.info(
        {
          header: 'x-api-key: super-secret-model-key',
          quoted: 'a "super-secret-model-key" in quotes',
          token: 'v1.not-a-known-shape-but-a-token-field',
          nested: { clientSecret: 'the-oauth-client-secret' },
        },
        'calling with ghs_abcdefghijklmnopqrstuvwxyz0123',
      );
      const out = lines.join('');
      expect(out).not.toContain('super-secret-model-key');
      expect(out).not.toContain('ghs_abcdefghijklmnopqrstuvwxyz0123');
      expect(out).not.toContain('not-a-known-shape');
      expect(out).not.toContain('the-oauth-client-secret');
      expect(out).toContain('[REDACTED]');
    }
  });

  it('LOG_FORMAT accepts pretty or json and names itself otherwise', () => {
    expect(loadAppConfig({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(loadAppConfig({}).logFormat).toBeUndefined();
    expect(() => loadAppConfig({ LOG_FORMAT: 'yaml' })).toThrow(/LOG_FORMAT must be pretty or json/);
  });

  it("carries the active span's trace and span ids, in JSON and in pretty lines, and none without one", () => {
    const tracer = idOnlyTracer();
    for (const format of ['json', 'pretty'] as const) {
      const { log, lines } = capture({ format });
      log.info('before');
      const span = tracer.startSpan('work');
      const { traceId, spanId } = span.spanContext();
      withSpan(span, () => log.child({ taskId: 't1' }).info('inside'));
      span.end();
      log.info('after');
      expect(lines[0]).not.toContain('trace_id');
      expect(lines[2]).not.toContain('trace_id');
      if (format === 'json') {
        expect(JSON.parse(lines[1]!)).toMatchObject({ msg: 'inside', trace_id: traceId, span_id: spanId });
      } else {
        expect(lines[1]).toContain(`trace_id=${traceId} span_id=${spanId}`);
      }
    }
  });
});
