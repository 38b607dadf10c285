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

describe('loadAppConfig: roles (docs/deploy.md)', () => {
  const secret = 'w'.repeat(40);
  const db = 'postgres://airlock@db.internal:5432/airlock';
  const problems = (env: Record<string, string>) => {
    try {
      loadAppConfig(env);
      return '';
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
  };

  it('runs both roles in one process on SQLite by default', () => {
    const config = loadAppConfig({});
    expect(config.role).toBe('all');
    expect(config.databaseUrl).toBeUndefined();
    expect(config.cluster.leaseSeconds).toBe(30);
  });

  it('reads a worker that has what it needs and no App key', () => {
    const config = loadAppConfig({
      AIRLOCK_ROLE: 'worker',
      DATABASE_URL: db,
      AIRLOCK_CONTROL_URL: 'http://control.internal:3001',
      AIRLOCK_WORKER_SECRET: secret,
      AIRLOCK_WORKER_NAME: 'kvm-host-1',
    });
    expect(config).toMatchObject({ role: 'worker', databaseUrl: db, github: undefined });
    expect(config.cluster).toMatchObject({
      controlUrl: 'http://control.internal:3001',
      workerName: 'kvm-host-1',
    });
  });

  it('refuses a worker given the App private key, before reading the key file', () => {
    const message = problems({
      AIRLOCK_ROLE: 'worker',
      DATABASE_URL: db,
      PRIVATE_KEY_PATH: '/nonexistent.pem',
      AIRLOCK_CONTROL_URL: 'http://control.internal:3001',
      AIRLOCK_WORKER_SECRET: secret,
    });
    expect(message).toMatch(/a worker never holds the GitHub App private key/);
    expect(message).not.toMatch(/cannot be read/);
    expect(problems({ AIRLOCK_ROLE: 'worker', PRIVATE_KEY: pem })).toMatch(
      /never holds the GitHub App private key/,
    );
  });

  it('names what each split role is missing', () => {
    const worker = problems({ AIRLOCK_ROLE: 'worker' });
    expect(worker).toMatch(/AIRLOCK_ROLE=worker needs DATABASE_URL/);
    expect(worker).toMatch(/AIRLOCK_CONTROL_URL is required for a worker/);
    expect(worker).toMatch(/AIRLOCK_WORKER_SECRET is required for a worker/);
    const control = problems({ AIRLOCK_ROLE: 'control', DATABASE_URL: db });
    expect(control).toMatch(/needs the GitHub App settings/);
    expect(control).toMatch(/AIRLOCK_WORKER_SECRET is required for a control plane/);
    expect(problems({ DATABASE_URL: 'mysql://x' })).toMatch(/DATABASE_URL must be a PostgreSQL URL/);
    expect(problems({ AIRLOCK_ROLE: 'boss' })).toMatch(/AIRLOCK_ROLE must be all, control or worker/);
    expect(problems({ AIRLOCK_WORKER_SECRET: 'short' })).toMatch(/AIRLOCK_WORKER_SECRET must be at least 32/);
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

describe('startAirlock: what this version runs', () => {
  it('refuses the split roles and DATABASE_URL clearly instead of starting something else', async () => {
    const { startAirlock } = await import('../../src/app.ts');
    const worker = {
      AIRLOCK_ROLE: 'worker',
      DATABASE_URL: 'postgres://airlock@db.internal/airlock',
      AIRLOCK_CONTROL_URL: 'http://control.internal:3001',
      AIRLOCK_WORKER_SECRET: 'w'.repeat(40),
    };
    await expect(startAirlock(worker)).rejects.toThrow(/AIRLOCK_ROLE=worker cannot run yet/);
    await expect(startAirlock({ DATABASE_URL: 'postgres://airlock@db.internal/airlock' })).rejects.toThrow(
      /DATABASE_URL cannot be used yet/,
    );
  });
});
