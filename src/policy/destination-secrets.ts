import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { basicSecret, type DestinationSecret, headerSecret } from '../proxy/destination-secret.ts';
import type { DestinationSecretRule } from './operator-policy.ts';

/**
 * Reads the value of each secret the policy file defines (from the named environment variable or
 * file) and builds what the proxy sends. Throws a ConfigError naming every secret whose value is
 * missing, unreadable, shorter than 8 characters or spans lines.
 */
export function resolveDestinationSecrets(
  rules: Readonly<Record<string, DestinationSecretRule>>,
  env: Record<string, string | undefined>,
  readFile: (file: string) => string = (file) => readFileSync(file, 'utf8'),
): Map<string, DestinationSecret> {
  const resolved = new Map<string, DestinationSecret>();
  const issues: string[] = [];
  for (const [name, rule] of Object.entries(rules)) {
    const from = 'env' in rule.value ? `environment variable ${rule.value.env}` : `file ${rule.value.file}`;
    let value: string | undefined;
    let upstreamCa: string | undefined;
    try {
      value = 'env' in rule.value ? env[rule.value.env] : readFile(rule.value.file).replace(/\r?\n$/, '');
      if (rule.ca_file) upstreamCa = readFile(rule.ca_file);
    } catch (error) {
      issues.push(
        `\`secrets.${name}\`: cannot read ${(error as NodeJS.ErrnoException).path ?? from}: ${(error as Error).message}`,
      );
      continue;
    }
    if (!value) {
      issues.push(`\`secrets.${name}\`: the ${from} is ${value === undefined ? 'not set' : 'empty'}`);
      continue;
    }
    if (value.length < 8 || /[\r\n\0]/.test(value)) {
      issues.push(`\`secrets.${name}\`: the value in the ${from} must be one line of at least 8 characters`);
      continue;
    }
    if (upstreamCa !== undefined && !upstreamCa.includes('-----BEGIN CERTIFICATE-----')) {
      issues.push(`\`secrets.${name}\`: ca_file ${rule.ca_file} holds no PEM certificate`);
      continue;
    }
    const common = { name, host: rule.host, port: rule.port, ...(upstreamCa ? { upstreamCa } : {}) };
    resolved.set(
      name,
      rule.basic
        ? basicSecret({ ...common, username: rule.basic.username, password: value })
        : headerSecret({
            ...common,
            header: rule.header!,
            ...(rule.scheme ? { scheme: rule.scheme } : {}),
            value,
          }),
    );
  }
  if (issues.length) throw new ConfigError('the secrets in the policy file cannot be loaded', issues);
  return resolved;
}
