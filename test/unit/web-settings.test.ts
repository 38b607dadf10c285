import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { escapeHtml, html } from '../../src/web/html.ts';
import { Sealer } from '../../src/web/session-sealer.ts';
import { safeReturnPath } from '../../src/web/web-session.ts';

const pem = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs1', format: 'pem' })
  .toString();
const app = { APP_ID: '12', PRIVATE_KEY: pem, WEBHOOK_SECRET: 'a-long-secret' };

describe('web and retention settings', () => {
  it('defaults: 8-hour sessions, 60 s access cache, open metrics, 90 days of prompt text', () => {
    const config = loadAppConfig(app);
    expect(config.web).toEqual({ sessionHours: 8, accessCacheSeconds: 60, metricsPublic: true });
    expect(config.retention.promptDays).toBe(90);
  });

  it('reads forever and 0 for retention, false for public metrics', () => {
    expect(
      loadAppConfig({ ...app, AIRLOCK_PROMPT_RETENTION_DAYS: 'forever' }).retention.promptDays,
    ).toBeNull();
    expect(loadAppConfig({ ...app, AIRLOCK_PROMPT_RETENTION_DAYS: '0' }).retention.promptDays).toBe(0);
    expect(loadAppConfig({ ...app, AIRLOCK_METRICS_PUBLIC: 'false' }).web.metricsPublic).toBe(false);
  });

  it('says what is wrong with each web setting', () => {
    expect(() => loadAppConfig({ ...app, AIRLOCK_PROMPT_RETENTION_DAYS: 'soon' })).toThrow(
      /AIRLOCK_PROMPT_RETENTION_DAYS: AIRLOCK_PROMPT_RETENTION_DAYS must be a whole number of days/,
    );
    expect(() => loadAppConfig({ ...app, AIRLOCK_SESSION_SECRET: 'short' })).toThrow(
      /AIRLOCK_SESSION_SECRET must be at least 32 characters \(openssl rand -hex 32\)/,
    );
    expect(() => loadAppConfig({ ...app, GITHUB_CLIENT_ID: 'Iv1.abc' })).toThrow(
      /GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together/,
    );
    expect(() =>
      loadAppConfig({ ...app, GITHUB_CLIENT_ID: 'Iv1.abc', GITHUB_CLIENT_SECRET: 'x'.repeat(40) }),
    ).toThrow(/AIRLOCK_SESSION_SECRET is required when GITHUB_CLIENT_ID is set/);
    const ok = loadAppConfig({
      ...app,
      GITHUB_CLIENT_ID: 'Iv1.abc',
      GITHUB_CLIENT_SECRET: 'x'.repeat(40),
      AIRLOCK_SESSION_SECRET: 'y'.repeat(64),
    });
    expect(ok.github?.clientId).toBe('Iv1.abc');
  });
});

describe('sealed cookies', () => {
  const sealer = new Sealer('s'.repeat(40));

  it('round-trips a value for its purpose only', () => {
    const sealed = sealer.seal('session', { login: 'bob', n: 1 });
    expect(sealed).not.toContain('bob');
    expect(sealer.unseal('session', sealed)).toEqual({ login: 'bob', n: 1 });
    expect(sealer.unseal('sign-in', sealed)).toBeUndefined();
    expect(new Sealer('t'.repeat(40)).unseal('session', sealed)).toBeUndefined();
  });

  it('refuses any altered byte', () => {
    const raw = Buffer.from(sealer.seal('session', { login: 'bob' }), 'base64url');
    for (let i = 0; i < raw.length; i++) {
      const copy = Buffer.from(raw);
      copy[i] = copy[i]! ^ 1;
      expect(sealer.unseal('session', copy.toString('base64url'))).toBeUndefined();
    }
    expect(sealer.unseal('session', 'AAAA')).toBeUndefined();
    expect(sealer.unseal('session', undefined)).toBeUndefined();
  });
});

describe('page helpers', () => {
  it('returns only to local paths', () => {
    expect(safeReturnPath('/tasks/abc?x=1')).toBe('/tasks/abc?x=1');
    for (const bad of ['//evil.example', '/\\evil.example', 'https://evil.example', '', undefined]) {
      expect(safeReturnPath(bad)).toBe('/tasks');
    }
  });

  it('escapes every interpolated value', () => {
    const attack = `<script>alert("x")</script>' onload='x`;
    expect(html`<p title="${attack}">${attack}</p>`.value).toBe(
      `<p title="${escapeHtml(attack)}">${escapeHtml(attack)}</p>`,
    );
    expect(html`${[attack, html`<b>ok</b>`]}`.value).toBe(`${escapeHtml(attack)}<b>ok</b>`);
    expect(escapeHtml(attack)).not.toMatch(/[<>"']/);
  });
});
