import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { resolveDestinationSecrets } from '../../src/policy/destination-secrets.ts';
import { parseOperatorPolicy } from '../../src/policy/load-operator-policy.ts';
import { policyFor } from '../../src/policy/policy-for.ts';

const POLICY = `
secrets:
  npm-private:
    host: NPM.corp.example
    header: Authorization
    scheme: Bearer
    value: { env: NPM_TOKEN }
  pypi-private:
    host: pypi.corp.example
    port: 8443
    basic: { username: airlock }
    value: { file: /etc/airlock/pypi-password }
    ca_file: /etc/airlock/corp-ca.pem
defaults:
  secrets: [npm-private]
orgs:
  acme:
    secrets: [npm-private, pypi-private]
repos:
  acme/public-site:
    secrets: []
`;

const issuesOf = (attempt: () => unknown): readonly string[] => {
  try {
    attempt();
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
  throw new Error('expected a ConfigError');
};

describe('secrets in the operator policy', () => {
  it('are granted per repository like every other rule, most specific first', () => {
    const policy = parseOperatorPolicy(POLICY, 'policy.yml', {});
    expect(policy.secrets['npm-private']).toMatchObject({ host: 'npm.corp.example', port: 443 });
    expect(policyFor(policy, 'other/repo').secrets).toEqual(['npm-private']);
    expect(policyFor(policy, 'acme/widgets').secrets).toEqual(['npm-private', 'pypi-private']);
    expect(policyFor(policy, 'acme/public-site').secrets).toEqual([]);
    expect(policyFor(parseOperatorPolicy(undefined, 'none', {}), 'acme/widgets').secrets).toEqual([]);
  });

  it('refuse a grant of an undefined secret, two secrets on one host, and malformed entries', () => {
    expect(
      issuesOf(() => parseOperatorPolicy('repos:\n  acme/w:\n    secrets: [nope]\n', 'p.yml', {})),
    ).toEqual(['`repos.acme/w.secrets` names nope, which `secrets:` does not define']);
    const twice =
      'secrets:\n  a:\n    host: r.example.com\n    header: x-token\n    value: { env: A }\n  b:\n    host: r.example.com\n    basic: { username: u }\n    value: { env: B }\n';
    expect(issuesOf(() => parseOperatorPolicy(twice, 'p.yml', {}))).toEqual([
      '`secrets.a` and `secrets.b` are both bound to r.example.com:443: keep one',
    ]);
    const bad = [
      ['host: "*.example.com"\n    header: x\n    value: { env: A }', 'must be one host name'],
      ['host: r.example.com\n    value: { env: A }', 'needs exactly one of `header:` and `basic:`'],
      [
        'host: r.example.com\n    header: x\n    basic: { username: u }\n    value: { env: A }',
        'exactly one',
      ],
      ['host: r.example.com\n    header: Host\n    value: { env: A }', 'cannot be one of'],
      ['host: r.example.com\n    header: x\n    value: "inline-secret-value"', 'secrets.s.value'],
      [
        'host: r.example.com\n    basic: { username: u }\n    scheme: Bearer\n    value: { env: A }',
        '`scheme:` goes with `header:` only',
      ],
    ];
    for (const [entry, message] of bad) {
      const issues = issuesOf(() => parseOperatorPolicy(`secrets:\n  s:\n    ${entry}\n`, 'p.yml', {}));
      expect(issues.join('\n'), entry).toContain(message);
    }
  });

  it('read their values from the environment or a file, and say which one is missing', () => {
    const policy = parseOperatorPolicy(POLICY, 'policy.yml', {});
    const files: Record<string, string> = {
      '/etc/airlock/pypi-password': 'correct-horse-battery\n',
      '/etc/airlock/corp-ca.pem': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    };
    const read = (file: string) => {
      const text = files[file];
      if (text === undefined)
        throw Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { path: file });
      return text;
    };
    const secrets = resolveDestinationSecrets(policy.secrets, { NPM_TOKEN: 'npm_abcdefgh12345' }, read);
    expect(secrets.get('npm-private')).toMatchObject({
      host: 'npm.corp.example',
      header: 'authorization',
      headerValue: 'Bearer npm_abcdefgh12345',
    });
    expect(secrets.get('pypi-private')).toMatchObject({
      port: 8443,
      headerValue: `Basic ${Buffer.from('airlock:correct-horse-battery').toString('base64')}`,
      upstreamCa: files['/etc/airlock/corp-ca.pem'],
    });
    delete files['/etc/airlock/pypi-password'];
    expect(issuesOf(() => resolveDestinationSecrets(policy.secrets, { NPM_TOKEN: 'short' }, read))).toEqual([
      '`secrets.npm-private`: the value in the environment variable NPM_TOKEN must be one line of at least 8 characters',
      "`secrets.pypi-private`: cannot read /etc/airlock/pypi-password: ENOENT: no such file, open '/etc/airlock/pypi-password'",
    ]);
    expect(issuesOf(() => resolveDestinationSecrets(policy.secrets, {}, read))[0]).toBe(
      '`secrets.npm-private`: the environment variable NPM_TOKEN is not set',
    );
  });

  it('read_repositories: granted per owner or repository, only of that owner', () => {
    const policy = parseOperatorPolicy(
      'orgs:\n  acme:\n    read_repositories: [acme/private-lib]\nrepos:\n  acme/site:\n    read_repositories: []\n',
      'p.yml',
      {},
    );
    expect(policyFor(policy, 'acme/widgets').read_repositories).toEqual(['acme/private-lib']);
    expect(policyFor(policy, 'acme/site').read_repositories).toEqual([]);
    expect(policyFor(policy, 'other/repo').read_repositories).toEqual([]);
    expect(
      issuesOf(() =>
        parseOperatorPolicy('repos:\n  acme/w:\n    read_repositories: [evil/lib]\n', 'p.yml', {}),
      ),
    ).toEqual([
      '`repos.acme/w.read_repositories` names evil/lib, which is not of acme (one installation covers one owner)',
    ]);
    expect(
      issuesOf(() => parseOperatorPolicy('defaults:\n  read_repositories: [acme/lib]\n', 'p.yml', {})).join(),
    ).toContain('defaults');
  });
});
