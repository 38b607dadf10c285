import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { DEFAULT_REPO_CONFIG, parseRepoConfig } from '../../src/config/repo-config.ts';
import { ConfigError } from '../../src/errors.ts';
import { loadOperatorPolicy, parseOperatorPolicy } from '../../src/policy/load-operator-policy.ts';
import { egressNameCovered, modelNameMatches } from '../../src/policy/name-patterns.ts';
import { BUILT_IN_CAPS, operatorPolicyJsonSchema } from '../../src/policy/operator-policy.ts';
import { policyFor } from '../../src/policy/policy-for.ts';
import {
  allowedModelFeatures,
  type PolicyRequest,
  policyViolations,
} from '../../src/policy/policy-violations.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-policy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const policyFile = async (text: string) => {
  const file = path.join(dir, 'policy.yml');
  await writeFile(file, text);
  return file;
};

const errorOf = (attempt: () => unknown): Error => {
  try {
    attempt();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
};

type JsonSchemaNode = {
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
  additionalProperties?: JsonSchemaNode | boolean;
};

describe('loadOperatorPolicy', () => {
  it('with no file, keeps every ordinary repository config working and caps the extremes', () => {
    const policy = loadOperatorPolicy(undefined, {});
    expect(policy.defaults.caps).toEqual(BUILT_IN_CAPS);
    expect(policy.defaults).toMatchObject({
      agents: ['claude', 'codex', 'opencode', 'script'],
      models: { names: ['*'], features: [] },
      egress: { names: ['*'] },
      approval: { min_before_run: 'never', min_before_push: 'never' },
      allow_forks: true,
    });
    const rules = policyFor(policy, 'acme/widgets');
    expect(policyViolations(rules, DEFAULT_REPO_CONFIG)).toEqual([]);
    const ordinary = parseRepoConfig(
      'agent: codex\nmodel: gpt-5\nallow_forks: true\negress:\n  allow: [registry.npmjs.org]\nlimits: { cpus: 4, memory_mib: 8192 }\n',
    );
    expect(policyViolations(rules, ordinary)).toEqual([]);
    const extreme = parseRepoConfig(
      'timeout_minutes: 360\nlimits: { cpus: 16, memory_mib: 32768, disk_mib: 200000 }\nbudget: { max_tokens: 900000000 }\n',
    );
    expect(policyViolations(rules, extreme).map((v) => v.field)).toEqual([
      'budget.max_tokens',
      'timeout_minutes',
      'limits.cpus',
      'limits.memory_mib',
      'limits.disk_mib',
    ]);
  });

  it('reads a file, completing its caps from AIRLOCK_MAX_* and then the built-in caps', async () => {
    const file = await policyFile('defaults:\n  caps:\n    cpus: 6\n');
    const policy = loadOperatorPolicy(file, { AIRLOCK_MAX_CPUS: '2', AIRLOCK_MAX_MEMORY_MIB: '4096' });
    // The file's defaults win over the variables, which win over the built-in caps.
    expect(policy.defaults.caps).toEqual({ ...BUILT_IN_CAPS, cpus: 6, memory_mib: 4096 });
    expect(
      loadOperatorPolicy(undefined, { AIRLOCK_MAX_TOKENS: '500000', AIRLOCK_MAX_DISK_MIB: '1024' }),
    ).toMatchObject({ defaults: { caps: { max_tokens: 500_000, disk_mib: 1024 } } });
    expect(
      loadOperatorPolicy(undefined, { AIRLOCK_MAX_TIMEOUT_MINUTES: '45' }).defaults.caps.timeout_minutes,
    ).toBe(45);
  });

  it('names the file and each bad field', async () => {
    const file = await policyFile(
      [
        'defaults:',
        '  agents: [gpt]',
        '  caps: { cpus: 0 }',
        '  egress: { names: ["https://x.example.com/"] }',
        '  approval: { min_before_run: sometimes }',
        'orgs:',
        '  acme: { caps: { memry_mib: 1 } }',
        'repos:',
        '  not-a-repo: {}',
      ].join('\n'),
    );
    const error = errorOf(() => loadOperatorPolicy(file, {}));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(`policy file ${file} is invalid`);
    expect(error.message).toMatch(/`defaults\.agents\.0`/);
    expect(error.message).toMatch(/`defaults\.caps\.cpus`/);
    expect(error.message).toMatch(/`defaults\.egress\.names\.0`: must be \*, a host name/);
    expect(error.message).toMatch(/`defaults\.approval\.min_before_run`/);
    expect(error.message).toMatch(/`orgs\.acme\.caps`.*memry_mib/);
    expect(error.message).toMatch(/`repos\.not-a-repo`: must be a repository as owner\/name/);
  });

  it('refuses two entries for one owner that differ only in case', () => {
    expect(() => parseOperatorPolicy('orgs:\n  Acme: {}\n  acme: {}\n', 'p.yml', {})).toThrow(
      /`orgs\.Acme` and `orgs\.acme` name the same owner/,
    );
  });

  it('takes its path from AIRLOCK_POLICY in the app settings', () => {
    expect(loadAppConfig({ AIRLOCK_POLICY: '/etc/airlock/policy.yml' }).policyFile).toBe(
      '/etc/airlock/policy.yml',
    );
    expect(loadAppConfig({ AIRLOCK_POLICY: '' }).policyFile).toBeUndefined();
  });

  it('reports bad YAML, an unreadable file and a bad variable', async () => {
    expect(() => parseOperatorPolicy('defaults: [unclosed\n', 'p.yml', {})).toThrow(
      /policy file p\.yml is not valid YAML/,
    );
    expect(() => loadOperatorPolicy(path.join(dir, 'missing.yml'), {})).toThrow(
      /AIRLOCK_POLICY .*missing\.yml cannot be read/,
    );
    expect(() => loadOperatorPolicy(undefined, { AIRLOCK_MAX_CPUS: 'eight' })).toThrow(
      /AIRLOCK_MAX_CPUS: must be a whole number above 0/,
    );
    expect(() => loadOperatorPolicy(undefined, { AIRLOCK_MAX_TOKENS: '-1' })).toThrow(/AIRLOCK_MAX_TOKENS/);
  });

  it('generates a JSON Schema for editors, and the copy in docs/ is current', () => {
    const schema = operatorPolicyJsonSchema() as JsonSchemaNode;
    expect(Object.keys(schema.properties ?? {})).toEqual(['defaults', 'orgs', 'repos', 'prices', 'secrets']);
    const undescribed: string[] = [];
    const walk = (node: JsonSchemaNode, at: string): void => {
      for (const [name, field] of Object.entries(node.properties ?? {})) {
        if (!field.description) undescribed.push(`${at}${name}`);
        walk(field, `${at}${name}.`);
      }
      if (typeof node.additionalProperties === 'object') walk(node.additionalProperties, `${at}*.`);
    };
    walk(schema, '');
    expect(undescribed, 'every field, at every level, says what it means').toEqual([]);
    const shipped = JSON.parse(
      readFileSync(new URL('../../docs/airlock-policy.schema.json', import.meta.url), 'utf8'),
    );
    expect(
      shipped,
      'regenerate with: node -e "import(\'./src/policy/operator-policy.ts\').then(m => console.log(JSON.stringify(m.operatorPolicyJsonSchema(), null, 2)))" > docs/airlock-policy.schema.json',
    ).toEqual(schema);
  });
});

describe('policyFor', () => {
  const policy = parseOperatorPolicy(
    [
      'defaults:',
      '  agents: [claude]',
      '  caps: { cpus: 4, memory_mib: 4096 }',
      '  approval: { min_before_run: untrusted }',
      'orgs:',
      '  acme:',
      '    agents: [claude, codex]',
      '    caps: { cpus: 8 }',
      '    allow_forks: false',
      'repos:',
      '  acme/big:',
      '    caps: { cpus: 16 }',
      '    approval: { min_before_push: always }',
      '  other/thing:',
      '    models: { features: [web_search] }',
    ].join('\n'),
    'p.yml',
    {},
  );

  it('applies the defaults to a repository with no override', () => {
    expect(policyFor(policy, 'someone/else')).toEqual(policy.defaults);
  });

  it('lets the organisation override the defaults field by field', () => {
    const rules = policyFor(policy, 'acme/small');
    expect(rules.agents).toEqual(['claude', 'codex']);
    expect(rules.caps).toMatchObject({ cpus: 8, memory_mib: 4096 });
    expect(rules.allow_forks).toBe(false);
    expect(rules.approval).toEqual({ min_before_run: 'untrusted', min_before_push: 'never' });
  });

  it('lets the repository override its organisation, the most specific winning, whatever the case', () => {
    const rules = policyFor(policy, 'ACME/Big');
    expect(rules.caps).toMatchObject({ cpus: 16, memory_mib: 4096 });
    expect(rules.agents).toEqual(['claude', 'codex']);
    expect(rules.allow_forks).toBe(false);
    expect(rules.approval).toEqual({ min_before_run: 'untrusted', min_before_push: 'always' });
    expect(policyFor(policy, 'other/thing').models).toEqual({ names: ['*'], features: ['web_search'] });
  });
});

describe('policyViolations', () => {
  const rules = policyFor(
    parseOperatorPolicy(
      [
        'defaults:',
        '  agents: [claude, script]',
        '  models: { names: ["claude-sonnet-*"], features: [web_search] }',
        '  caps: { cpus: 8, max_tokens: 1000000, timeout_minutes: 60, memory_mib: 8192, disk_mib: 16384 }',
        '  egress: { names: [registry.npmjs.org, "*.pypi.org"] }',
        '  approval: { min_before_run: untrusted, min_before_push: always }',
        '  allow_forks: false',
      ].join('\n'),
      'p.yml',
      {},
    ),
    'acme/widgets',
  );
  const within: PolicyRequest = {
    ...DEFAULT_REPO_CONFIG,
    model: 'claude-sonnet-4-5',
    budget: { max_tokens: 1_000_000 },
    timeout_minutes: 60,
    limits: { ...DEFAULT_REPO_CONFIG.limits, cpus: 8 },
    egress: { allow: ['registry.npmjs.org', 'files.pypi.org', '*.cdn.pypi.org'] },
    models: { allow: ['web_search'] },
    approval: { before_run: 'always', before_push: 'always' },
  };

  it('finds nothing in a config within every limit', () => {
    expect(policyViolations(rules, within)).toEqual([]);
  });

  it('names each limit a config goes beyond, in words fit for a comment on GitHub', () => {
    const violations = policyViolations(rules, {
      ...within,
      agent: 'codex',
      model: 'gpt-5',
      budget: { max_tokens: 5_000_000 },
      timeout_minutes: 61,
      limits: { cpus: 16, memory_mib: 32768, disk_mib: 200_000, output_kib: 64 },
      egress: { allow: ['registry.npmjs.org', 'evil.example.com', 'pypi.org', '*.org'] },
      models: { allow: ['web_search', 'code_execution'] },
      approval: { before_run: 'never', before_push: 'never' },
      allow_forks: true,
    });
    expect(violations.map((v) => v.message)).toEqual([
      "`budget.max_tokens: 5000000` is above this airlock's cap of 1,000,000 tokens",
      "`timeout_minutes: 61` is above this airlock's cap of 60 minutes",
      "`limits.cpus: 16` is above this airlock's cap of 8 CPUs",
      "`limits.memory_mib: 32768` is above this airlock's cap of 8,192 MiB",
      "`limits.disk_mib: 200000` is above this airlock's cap of 16,384 MiB",
      '`agent: codex` is not among the agents this airlock allows (claude, script)',
      '`model: gpt-5` is not among the models this airlock allows (claude-sonnet-*)',
      '`egress.allow: evil.example.com` is not a name this airlock lets a repository add (allowed: registry.npmjs.org, *.pypi.org)',
      '`egress.allow: pypi.org` is not a name this airlock lets a repository add (allowed: registry.npmjs.org, *.pypi.org)',
      '`egress.allow: *.org` is not a name this airlock lets a repository add (allowed: registry.npmjs.org, *.pypi.org)',
      '`models.allow: code_execution` is not a model feature this airlock lets a repository enable (allowed: web_search)',
      "`approval.before_run: never` is below this airlock's minimum of `untrusted`",
      "`approval.before_push: never` is below this airlock's minimum of `always`",
      '`allow_forks: true` is not allowed: this airlock does not let repositories enable forks',
    ]);
    expect(violations[2]).toEqual({
      field: 'limits.cpus',
      asked: 16,
      limit: 8,
      message: "`limits.cpus: 16` is above this airlock's cap of 8 CPUs",
    });
    expect(violations[5]).toMatchObject({ field: 'agent', asked: 'codex', limit: ['claude', 'script'] });
  });

  it('reads a config without approval settings as no approval, so a required minimum refuses it', () => {
    expect(policyViolations(rules, { ...within, approval: undefined }).map((v) => v.field)).toEqual([
      'approval.before_run',
      'approval.before_push',
    ]);
  });

  it('says so when the operator allows no egress names or model features at all', () => {
    const strict = policyFor(
      parseOperatorPolicy('defaults: { egress: { names: [] } }', 'p.yml', {}),
      'acme/widgets',
    );
    const messages = policyViolations(strict, {
      ...DEFAULT_REPO_CONFIG,
      egress: { allow: ['registry.npmjs.org'] },
      models: { allow: ['web_search'] },
    }).map((v) => v.message);
    expect(messages).toEqual([
      '`egress.allow: registry.npmjs.org` is not a name this airlock lets a repository add (none are allowed)',
      '`models.allow: web_search` is not a model feature this airlock lets a repository enable (none are allowed)',
    ]);
  });
});

describe('allowedModelFeatures', () => {
  it('is what the repository asks for that the operator permits, and nothing by default', () => {
    const permissive = policyFor(
      parseOperatorPolicy('defaults: { models: { features: [web_search, web_fetch] } }', 'p.yml', {}),
      'a/b',
    );
    expect(allowedModelFeatures(permissive, { models: { allow: ['web_search', 'code_execution'] } })).toEqual(
      ['web_search'],
    );
    expect(allowedModelFeatures(permissive, {})).toEqual([]);
    const builtIn = policyFor(loadOperatorPolicy(undefined, {}), 'a/b');
    expect(allowedModelFeatures(builtIn, { models: { allow: ['web_search'] } })).toEqual([]);
  });
});

describe('name patterns', () => {
  it('matches model names with * as any run of characters, and nothing else special', () => {
    expect(modelNameMatches('claude-sonnet-4-5', 'claude-sonnet-*')).toBe(true);
    expect(modelNameMatches('Claude-Sonnet-4', 'claude-sonnet-*')).toBe(true);
    expect(modelNameMatches('claude-opus-4', 'claude-sonnet-*')).toBe(false);
    expect(modelNameMatches('gpt-5', '*')).toBe(true);
    expect(modelNameMatches('gpt-5x', 'gpt-5')).toBe(false);
    expect(modelNameMatches('gpt-5', 'gpt.5')).toBe(false);
  });

  it('covers an egress name only by a pattern at least as wide', () => {
    expect(egressNameCovered('anything.example', '*')).toBe(true);
    expect(egressNameCovered('*.anything.example', '*')).toBe(true);
    expect(egressNameCovered('Registry.NPMjs.org', 'registry.npmjs.org')).toBe(true);
    expect(egressNameCovered('files.pypi.org', '*.pypi.org')).toBe(true);
    expect(egressNameCovered('*.pypi.org', '*.pypi.org')).toBe(true);
    expect(egressNameCovered('*.cdn.pypi.org', '*.pypi.org')).toBe(true);
    expect(egressNameCovered('pypi.org', '*.pypi.org')).toBe(false);
    expect(egressNameCovered('evilpypi.org', '*.pypi.org')).toBe(false);
    expect(egressNameCovered('*.org', '*.pypi.org')).toBe(false);
    expect(egressNameCovered('*.pypi.org', 'files.pypi.org')).toBe(false);
  });
});
