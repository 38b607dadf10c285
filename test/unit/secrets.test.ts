import { describe, expect, it } from 'vitest';
import { SecretRedactor } from '../../src/secrets.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';

describe('SecretRedactor', () => {
  it('scrubs registered values and known credential shapes', () => {
    const redactor = new SecretRedactor();
    redactor.add('v1.opaque-installation-token-value');
    const text = [
      'token v1.opaque-installation-token-value',
      'ghs_abcdefghijklmnopqrstuvwxyz0123456789',
      'sk-ant-api03-abcdefghijklmnopqrstuvwxyz',
      'Authorization: Bearer abc.def.ghi-123456',
    ].join('\n');
    const out = redactor.scrub(text);
    expect(out).not.toMatch(/opaque-installation|ghs_abc|sk-ant-api03|abc\.def\.ghi/);
    expect(out.match(/\[REDACTED\]/g)).toHaveLength(4);
  });

  it('refuses to register short values', () => {
    expect(() => new SecretRedactor().add('abc')).toThrow(/shorter than 8/);
  });

  it('is applied by the logger to every line', () => {
    const redactor = new SecretRedactor();
    const { log, lines } = memoryLogger(redactor);
    redactor.add('super-secret-model-key');
    log.info(
      { nested: { note: 'key=super-secret-model-key' }, token: 'x' },
      'calling with super-secret-model-key',
    );
    expect(lines.join('')).not.toContain('super-secret-model-key');
    expect(lines.join('')).toContain('[REDACTED]');
  });
});
