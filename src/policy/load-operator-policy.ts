import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import {
  BUILT_IN_CAPS,
  type OperatorPolicy,
  OperatorPolicyFile,
  type PolicyCaps,
} from './operator-policy.ts';

/** The environment variables that set a default cap when the policy file does not. */
export const CAP_VARIABLES: Readonly<Record<keyof PolicyCaps, string>> = {
  max_tokens: 'AIRLOCK_MAX_TOKENS',
  timeout_minutes: 'AIRLOCK_MAX_TIMEOUT_MINUTES',
  cpus: 'AIRLOCK_MAX_CPUS',
  memory_mib: 'AIRLOCK_MAX_MEMORY_MIB',
  disk_mib: 'AIRLOCK_MAX_DISK_MIB',
};

const capValue = z.coerce.number().int().positive();

/**
 * Reads the operator's policy (`AIRLOCK_POLICY`; no path means no file) and completes its default
 * caps. Precedence, most specific first: `repos.<owner/name>`, `orgs.<owner>`, the file's
 * `defaults`, the `AIRLOCK_MAX_*` variables, the built-in caps. Throws a ConfigError naming the
 * file (or variable) and each bad field.
 */
export function loadOperatorPolicy(
  path: string | undefined,
  env: Record<string, string | undefined>,
): OperatorPolicy {
  if (path === undefined || path === '') return parseOperatorPolicy(undefined, 'no policy file', env);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`AIRLOCK_POLICY ${path} cannot be read`, [], {
      cause,
      hint: 'point AIRLOCK_POLICY at the operator policy YAML file, or unset it to use the built-in policy',
    });
  }
  return parseOperatorPolicy(text, path, env);
}

/** Parses policy YAML text (`source` names it in errors) and completes its default caps from `env`. */
export function parseOperatorPolicy(
  text: string | undefined,
  source: string,
  env: Record<string, string | undefined>,
): OperatorPolicy {
  const caps = envCaps(env);
  let raw: unknown;
  try {
    raw = text === undefined ? undefined : parseYaml(text);
  } catch (cause) {
    throw new ConfigError(`policy file ${source} is not valid YAML`, [firstLine(cause)], { cause });
  }
  const parsed = OperatorPolicyFile.safeParse(raw ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => {
      const field = issue.path.length ? issue.path.join('.') : '(top level)';
      // A bad record key's own message (say, "must be a repository as owner/name") is one level down.
      const message =
        issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message;
      return `\`${field}\`: ${message}`;
    });
    throw new ConfigError(`policy file ${source} is invalid`, issues);
  }
  const file = parsed.data;
  const clashes = [
    ...sameNames('orgs', file.orgs),
    ...sameNames('repos', file.repos),
    ...referenceProblems(file),
  ];
  if (clashes.length) throw new ConfigError(`policy file ${source} is invalid`, clashes);
  return {
    ...file,
    defaults: { ...file.defaults, caps: { ...caps, ...file.defaults.caps }, read_repositories: [] },
  };
}

/** The built-in caps with any `AIRLOCK_MAX_*` variable applied; throws naming a bad variable. */
function envCaps(env: Record<string, string | undefined>): PolicyCaps {
  const caps: PolicyCaps = { ...BUILT_IN_CAPS };
  const issues: string[] = [];
  for (const [field, variable] of Object.entries(CAP_VARIABLES) as Array<[keyof PolicyCaps, string]>) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    const parsed = capValue.safeParse(value);
    if (parsed.success) caps[field] = parsed.data;
    else issues.push(`${variable}: must be a whole number above 0 (got ${JSON.stringify(value)})`);
  }
  if (issues.length) throw new ConfigError('airlock settings are invalid', issues);
  return caps;
}

/** Secrets granted but not defined, two secrets bound to one host and port, read_repositories of another owner. */
function referenceProblems(file: OperatorPolicyFile): string[] {
  const problems: string[] = [];
  const defined = new Set(Object.keys(file.secrets));
  const grants: Array<[string, string[] | undefined]> = [
    ['defaults.secrets', file.defaults.secrets],
    ...Object.entries(file.orgs).map(([k, v]): [string, string[] | undefined] => [
      `orgs.${k}.secrets`,
      v.secrets,
    ]),
    ...Object.entries(file.repos).map(([k, v]): [string, string[] | undefined] => [
      `repos.${k}.secrets`,
      v.secrets,
    ]),
  ];
  for (const [where, names] of grants) {
    for (const name of names ?? []) {
      if (!defined.has(name)) problems.push(`\`${where}\` names ${name}, which \`secrets:\` does not define`);
    }
  }
  const owners: Array<[string, string, string[] | undefined]> = [
    ...Object.entries(file.orgs).map(([k, v]): [string, string, string[] | undefined] => [
      `orgs.${k}`,
      k,
      v.read_repositories,
    ]),
    ...Object.entries(file.repos).map(([k, v]): [string, string, string[] | undefined] => [
      `repos.${k}`,
      k.split('/')[0]!,
      v.read_repositories,
    ]),
  ];
  for (const [where, owner, names] of owners) {
    for (const name of names ?? []) {
      if (name.split('/')[0]!.toLowerCase() !== owner.toLowerCase())
        problems.push(
          `\`${where}.read_repositories\` names ${name}, which is not of ${owner} (one installation covers one owner)`,
        );
    }
  }
  const sites = new Map<string, string>();
  for (const [name, secret] of Object.entries(file.secrets)) {
    const site = `${secret.host}:${secret.port}`;
    const first = sites.get(site);
    if (first)
      problems.push(`\`secrets.${first}\` and \`secrets.${name}\` are both bound to ${site}: keep one`);
    else sites.set(site, name);
  }
  return problems;
}

/** GitHub names are case-insensitive, so `Acme` and `acme` would be two entries for one owner. */
function sameNames(section: string, entries: Record<string, unknown>): string[] {
  const seen = new Map<string, string>();
  const clashes: string[] = [];
  for (const key of Object.keys(entries)) {
    const first = seen.get(key.toLowerCase());
    if (first === undefined) seen.set(key.toLowerCase(), key);
    else
      clashes.push(
        `\`${section}.${first}\` and \`${section}.${key}\` name the same ${section === 'orgs' ? 'owner' : 'repository'} (GitHub names ignore case): merge them`,
      );
  }
  return clashes;
}

function firstLine(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
