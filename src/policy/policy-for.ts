import type { OperatorPolicy, OverrideRules, PolicyRules } from './operator-policy.ts';

/** The rules in force for one repository: every field decided. */
export type EffectivePolicy = PolicyRules;

/**
 * The rules for `repoFullName` (owner/name): the defaults, overridden field by field by its
 * organisation's entry, then by its own. GitHub names are case-insensitive, and so is the match.
 */
export function policyFor(policy: OperatorPolicy, repoFullName: string): EffectivePolicy {
  const owner = repoFullName.split('/')[0]!;
  const org = entryFor(policy.orgs, owner);
  const repo = entryFor(policy.repos, repoFullName);
  return [org, repo].reduce<EffectivePolicy>(
    (rules, override) => applyOverride(rules, override),
    policy.defaults,
  );
}

function entryFor(entries: Record<string, OverrideRules>, name: string): OverrideRules | undefined {
  const key = name.toLowerCase();
  return Object.entries(entries).find(([k]) => k.toLowerCase() === key)?.[1];
}

function applyOverride(rules: EffectivePolicy, override: OverrideRules | undefined): EffectivePolicy {
  if (!override) return rules;
  return {
    agents: override.agents ?? rules.agents,
    models: { ...rules.models, ...override.models },
    caps: { ...rules.caps, ...override.caps },
    egress: { ...rules.egress, ...override.egress },
    approval: { ...rules.approval, ...override.approval },
    allow_forks: override.allow_forks ?? rules.allow_forks,
    spend: { ...rules.spend, ...override.spend },
    secrets: override.secrets ?? rules.secrets,
    read_repositories: override.read_repositories ?? rules.read_repositories,
  };
}
