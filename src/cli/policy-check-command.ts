import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { AirlockError } from '../errors.ts';
import { loadOperatorPolicy } from '../policy/load-operator-policy.ts';
import { policyFor } from '../policy/policy-for.ts';

/**
 * `airlock policy check <file> [--repo owner/name]`: validates an operator policy file (with the
 * AIRLOCK_MAX_* variables of this environment) and prints the rules in force for every repository,
 * or for the one named.
 */
export default async function policyCheck(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { repo: { type: 'string' } },
  });
  const file = positionals[0];
  if (!file) throw new AirlockError('usage', 'airlock policy check needs a file path');
  const policy = loadOperatorPolicy(file, process.env);
  const overrides = Object.keys(policy.orgs).length + Object.keys(policy.repos).length;
  process.stdout.write(`${file}: valid (${overrides} override(s))\n`);
  const rules = values.repo ? policyFor(policy, values.repo) : policy.defaults;
  process.stdout.write(`# ${values.repo ? `rules for ${values.repo}` : 'defaults'}\n${stringify(rules)}`);
  return 0;
}
