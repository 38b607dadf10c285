import type { RepoConfig } from '../config/repo-config.ts';
import { egressNameCovered, modelNameMatches } from './name-patterns.ts';
import type { PolicyCaps } from './operator-policy.ts';
import type { EffectivePolicy } from './policy-for.ts';

type BeforeRun = EffectivePolicy['approval']['min_before_run'];
type BeforePush = EffectivePolicy['approval']['min_before_push'];

/**
 * What a repository asks for, as the policy reads it: its parsed `.github/airlock.yml` (which always
 * carries `models` and `approval`, with their defaults). A request without `approval` is read as
 * no approval at all, so a policy that requires approval refuses it.
 */
export type PolicyRequest = Pick<
  RepoConfig,
  'agent' | 'model' | 'timeout_minutes' | 'limits' | 'budget' | 'egress' | 'allow_forks'
> & {
  models?: { allow?: readonly string[] | undefined } | undefined;
  approval?: { before_run?: BeforeRun | undefined; before_push?: BeforePush | undefined } | undefined;
};

/** One thing a repository asks for beyond the operator's policy; `message` is fit for a comment. */
export interface PolicyViolation {
  /** The repository config field, as written in .github/airlock.yml (`limits.cpus`). */
  field: string;
  asked: string | number | boolean;
  limit: string | number | boolean | readonly string[];
  message: string;
}

const CAPPED: ReadonlyArray<{
  cap: keyof PolicyCaps;
  field: string;
  unit: string;
  asked: (config: PolicyRequest) => number;
}> = [
  { cap: 'max_tokens', field: 'budget.max_tokens', unit: 'tokens', asked: (c) => c.budget.max_tokens },
  { cap: 'timeout_minutes', field: 'timeout_minutes', unit: 'minutes', asked: (c) => c.timeout_minutes },
  { cap: 'cpus', field: 'limits.cpus', unit: 'CPUs', asked: (c) => c.limits.cpus },
  { cap: 'memory_mib', field: 'limits.memory_mib', unit: 'MiB', asked: (c) => c.limits.memory_mib },
  { cap: 'disk_mib', field: 'limits.disk_mib', unit: 'MiB', asked: (c) => c.limits.disk_mib },
];

const RUN_ORDER: readonly BeforeRun[] = ['never', 'untrusted', 'always'];
const PUSH_ORDER: readonly BeforePush[] = ['never', 'always'];

/**
 * Everything `config` asks for beyond `effective` (from `policyFor`), one entry per field; empty
 * when the repository is within policy. A task must not start while this is non-empty.
 */
export function policyViolations(effective: EffectivePolicy, config: PolicyRequest): PolicyViolation[] {
  const found: PolicyViolation[] = [];
  for (const { cap, field, unit, asked } of CAPPED) {
    const value = asked(config);
    const limit = effective.caps[cap];
    if (value > limit)
      found.push({
        field,
        asked: value,
        limit,
        message: `\`${field}: ${value}\` is above this airlock's cap of ${limit.toLocaleString('en-US')} ${unit}`,
      });
  }
  if (!effective.agents.includes(config.agent))
    found.push({
      field: 'agent',
      asked: config.agent,
      limit: effective.agents,
      message: `\`agent: ${config.agent}\` is not among the agents this airlock allows (${effective.agents.join(', ')})`,
    });
  if (config.model !== undefined && !effective.models.names.some((p) => modelNameMatches(config.model!, p)))
    found.push({
      field: 'model',
      asked: config.model,
      limit: effective.models.names,
      message: `\`model: ${config.model}\` is not among the models this airlock allows (${effective.models.names.join(', ')})`,
    });
  for (const name of config.egress.allow) {
    if (effective.egress.names.some((p) => egressNameCovered(name, p))) continue;
    found.push({
      field: 'egress.allow',
      asked: name,
      limit: effective.egress.names,
      message: `\`egress.allow: ${name}\` is not a name this airlock lets a repository add (${listOrNone(effective.egress.names)})`,
    });
  }
  for (const feature of config.models?.allow ?? []) {
    if (effective.models.features.includes(feature)) continue;
    found.push({
      field: 'models.allow',
      asked: feature,
      limit: effective.models.features,
      message: `\`models.allow: ${feature}\` is not a model feature this airlock lets a repository enable (${listOrNone(effective.models.features)})`,
    });
  }
  const beforeRun = config.approval?.before_run ?? 'never';
  if (RUN_ORDER.indexOf(beforeRun) < RUN_ORDER.indexOf(effective.approval.min_before_run))
    found.push(belowMinimum('approval.before_run', beforeRun, effective.approval.min_before_run));
  const beforePush = config.approval?.before_push ?? 'never';
  if (PUSH_ORDER.indexOf(beforePush) < PUSH_ORDER.indexOf(effective.approval.min_before_push))
    found.push(belowMinimum('approval.before_push', beforePush, effective.approval.min_before_push));
  if (config.allow_forks && !effective.allow_forks)
    found.push({
      field: 'allow_forks',
      asked: true,
      limit: false,
      message: '`allow_forks: true` is not allowed: this airlock does not let repositories enable forks',
    });
  return found;
}

/**
 * The model features (`models.allow`) the proxy may let through for this repository: those it
 * asks for that the operator permits, so nothing unpermitted passes even if a violation is missed.
 */
export function allowedModelFeatures(
  effective: EffectivePolicy,
  config: Pick<PolicyRequest, 'models'>,
): string[] {
  return (config.models?.allow ?? []).filter((feature) => effective.models.features.includes(feature));
}

function belowMinimum(field: string, asked: string, limit: string): PolicyViolation {
  return {
    field,
    asked,
    limit,
    message: `\`${field}: ${asked}\` is below this airlock's minimum of \`${limit}\``,
  };
}

function listOrNone(names: readonly string[]): string {
  return names.length ? `allowed: ${names.join(', ')}` : 'none are allowed';
}
