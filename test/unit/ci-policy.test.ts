import { describe, expect, it } from 'vitest';
import {
  type CiFailure,
  decideAutofix,
  failureFingerprint,
  firstError,
  logTail,
  workflowFiles,
} from '../../src/ci/ci-policy.ts';

const base = {
  autofix: true,
  maxAttempts: 2,
  fork: false,
  workflowFilesChanged: [],
  previousAttempts: 0,
  previousFingerprints: [],
  fingerprint: 'abc',
};

const failure = (name: string, log: string, annotations: CiFailure['annotations'] = []): CiFailure => ({
  name,
  conclusion: 'failure',
  annotations,
  logTail: log,
});

describe('decideAutofix', () => {
  it('starts a numbered follow-up when every rule allows', () => {
    expect(decideAutofix(base)).toEqual({ fix: true, attempt: 1 });
    expect(decideAutofix({ ...base, previousAttempts: 1, previousFingerprints: ['zzz'] })).toEqual({
      fix: true,
      attempt: 2,
    });
  });

  it('says why it stops', () => {
    expect(decideAutofix({ ...base, autofix: false })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/ci.autofix/),
    });
    expect(decideAutofix({ ...base, fork: true })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/fork/),
    });
    expect(decideAutofix({ ...base, workflowFilesChanged: ['.github/workflows/ci.yml'] })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/workflow files \(.github\/workflows\/ci.yml\)/),
    });
    expect(decideAutofix({ ...base, previousAttempts: 2 })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/limit of 2/),
    });
    expect(decideAutofix({ ...base, previousAttempts: 1, previousFingerprints: ['abc'] })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/same failure came back/),
    });
  });
});

describe('failureFingerprint', () => {
  it('is stable across timestamps, ids, numbers and temp paths', () => {
    const a = failureFingerprint([
      failure('test', '2026-01-01T10:00:00.123Z Error: expected 3 to be 4 at /tmp/x1/a.test.ts:10'),
    ]);
    const b = failureFingerprint([
      failure('test', '2026-02-02T11:11:11.999Z Error: expected 5 to be 6 at /tmp/y9/a.test.ts:12'),
    ]);
    expect(a).toBe(b);
  });

  it('differs for a different first error or check', () => {
    const a = failureFingerprint([failure('test', 'Error: cannot find module foo')]);
    expect(failureFingerprint([failure('test', 'Error: cannot find module bar')])).not.toBe(a);
    expect(failureFingerprint([failure('lint', 'Error: cannot find module foo')])).not.toBe(a);
  });

  it('prefers annotations to log lines', () => {
    const withAnnotation = failure('test', 'noise\nError: x', [
      { path: 'src/a.ts', line: 3, message: 'Type error' },
    ]);
    const sameAnnotation = failure('test', 'other noise', [
      { path: 'src/a.ts', line: 9, message: 'Type error' },
    ]);
    expect(failureFingerprint([withAnnotation])).toBe(failureFingerprint([sameAnnotation]));
  });
});

describe('the generic exit-code annotation of Actions', () => {
  const generic = { path: '.github', line: 1, message: 'Process completed with exit code 1.' };

  it('does not make different failures look the same', () => {
    const a = failure(
      'test',
      'FAIL a\nError: cannot find module foo\n##[error]Process completed with exit code 1.',
      [generic],
    );
    const b = failure(
      'test',
      'FAIL a\nError: cannot find module bar\n##[error]Process completed with exit code 1.',
      [generic],
    );
    expect(firstError(a)).toBe('Error: cannot find module foo');
    expect(failureFingerprint([a])).not.toBe(failureFingerprint([b]));
  });

  it('gives way to a specific annotation wherever it is', () => {
    const f = failure('test', 'noise', [generic, { path: 'src/a.ts', line: 3, message: 'Type error' }]);
    expect(firstError(f)).toBe('src/a.ts: Type error');
  });
});

describe('checks that neither pass nor fail', () => {
  it('are not auto-fixed, and the reason names them', () => {
    expect(decideAutofix({ ...base, unfixable: [{ name: 'e2e', conclusion: 'cancelled' }] })).toMatchObject({
      fix: false,
      why: expect.stringMatching(/`e2e` ended `cancelled`/),
    });
  });
});

describe('helpers', () => {
  it('finds workflow files', () => {
    expect(
      workflowFiles([
        'src/a.ts',
        '.github/workflows/ci.yml',
        '.github/workflows/x/y.yml',
        '.github/airlock.yml',
      ]),
    ).toEqual(['.github/workflows/ci.yml']);
  });

  it('keeps the end of a log within the cap, at a line boundary, without timestamps', () => {
    const log = Array.from({ length: 1000 }, (_, i) => `2026-01-01T00:00:00.000Z line ${i}`).join('\n');
    const tail = logTail(log, 200);
    expect(Buffer.byteLength(tail)).toBeLessThanOrEqual(200);
    expect(tail.endsWith('line 999')).toBe(true);
    expect(tail.startsWith('line ')).toBe(true);
  });

  it('caps the tail in bytes when the log is multi-byte text', () => {
    const log = Array.from({ length: 500 }, (_, i) => `échec ✗ ${i} ${'日本語'.repeat(5)}`).join('\n');
    const tail = logTail(log, 300);
    expect(Buffer.byteLength(tail)).toBeLessThanOrEqual(300);
    expect(tail.endsWith('499 日本語日本語日本語日本語日本語')).toBe(true);
    expect(tail.startsWith('échec')).toBe(true);
  });
});
