import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { DEFAULT_REPO_CONFIG, parseRepoConfig, repoConfigJsonSchema } from '../../src/config/repo-config.ts';
import { ConfigError } from '../../src/errors.ts';

const pem = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ type: 'pkcs1', format: 'pem' })
  .toString();

describe('loadAppConfig', () => {
  it('runs in registration mode with no app credentials', () => {
    const config = loadAppConfig({});
    expect(config.github).toBeUndefined();
    expect(config.port).toBe(3000);
    expect(config.dataDir).toMatch(/\/data$/);
  });

  it('reads a complete app configuration', () => {
    const config = loadAppConfig({
      APP_ID: '12',
      PRIVATE_KEY: pem,
      WEBHOOK_SECRET: 'a-long-secret',
      PORT: '8080',
    });
    expect(config.github).toMatchObject({ appId: 12, apiUrl: 'https://api.github.com' });
    expect(config.port).toBe(8080);
  });

  it('names each bad variable and how to fix it', () => {
    const attempt = () =>
      loadAppConfig({ APP_ID: 'abc', PRIVATE_KEY: 'nope', PORT: '99999', AIRLOCK_ACCEL: 'gpu' });
    expect(attempt).toThrow(ConfigError);
    try {
      attempt();
    } catch (error) {
      const message = (error as Error).message;
      expect(message).toMatch(/APP_ID/);
      expect(message).toMatch(/PRIVATE_KEY must be the PEM private key/);
      expect(message).toMatch(/WEBHOOK_SECRET is required/);
      expect(message).toMatch(/PORT/);
      expect(message).toMatch(/AIRLOCK_ACCEL/);
    }
  });

  it('reports an unreadable PRIVATE_KEY_PATH', () => {
    expect(() =>
      loadAppConfig({ APP_ID: '1', PRIVATE_KEY_PATH: '/nonexistent.pem', WEBHOOK_SECRET: 'x'.repeat(10) }),
    ).toThrow(/PRIVATE_KEY_PATH \/nonexistent.pem cannot be read/);
  });
});

describe('parseRepoConfig', () => {
  it('reads models.allow by feature name, none by default, and names a misspelt feature', () => {
    expect(DEFAULT_REPO_CONFIG.models.allow).toEqual([]);
    expect(parseRepoConfig('models:\n  allow: [web_search, url_sources]\n').models.allow).toEqual([
      'web_search',
      'url_sources',
    ]);
    expect(() => parseRepoConfig('models:\n  allow: [web_serach]\n')).toThrow(/`models.allow.0`/);
  });

  it('uses defaults when the file is missing or empty', () => {
    expect(parseRepoConfig(undefined)).toEqual(DEFAULT_REPO_CONFIG);
    expect(parseRepoConfig('# nothing\n')).toEqual(DEFAULT_REPO_CONFIG);
    expect(DEFAULT_REPO_CONFIG).toMatchObject({
      label: 'airlock',
      agent: 'claude',
      ci: { autofix: false, max_attempts: 2 },
    });
  });

  it('reads a full file', () => {
    const config = parseRepoConfig(
      [
        'label: robot',
        'agent: codex',
        'setup: [npm ci]',
        'timeout_minutes: 10',
        'egress:',
        '  allow: [Registry.Example.com, "*.example.org"]',
        'ci:',
        '  autofix: true',
      ].join('\n'),
    );
    expect(config).toMatchObject({
      label: 'robot',
      agent: 'codex',
      setup: ['npm ci'],
      timeout_minutes: 10,
      egress: { allow: ['registry.example.com', '*.example.org'] },
      ci: { autofix: true, max_attempts: 2 },
    });
  });

  it('names the bad field', () => {
    expect(() => parseRepoConfig('agent: gpt\n')).toThrow(/`agent`/);
    expect(() => parseRepoConfig('timeout_minutes: 0\n')).toThrow(/`timeout_minutes`/);
    expect(() => parseRepoConfig('egress:\n  allow: ["https://evil.example.com/x"]\n')).toThrow(
      /`egress.allow.0`: must be a host name/,
    );
    expect(() => parseRepoConfig('lable: typo\n')).toThrow(/lable/);
    expect(() => parseRepoConfig('agent: [unclosed\n')).toThrow(/not valid YAML/);
  });

  it('generates a JSON Schema for editors, and the copy in docs/ is current', () => {
    const schema = repoConfigJsonSchema() as { properties: Record<string, { description?: string }> };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(['label', 'agent', 'setup', 'egress', 'ci']),
    );
    for (const [name, field] of Object.entries(schema.properties))
      expect(field.description, name).toBeTruthy();
    const shipped = JSON.parse(
      readFileSync(new URL('../../docs/airlock.schema.json', import.meta.url), 'utf8'),
    );
    expect(shipped, 'regenerate with: npm run airlock -- config schema > docs/airlock.schema.json').toEqual(
      schema,
    );
  });
});
