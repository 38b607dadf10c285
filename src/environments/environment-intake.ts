import { REPO_CONFIG_PATH, type RepoConfig } from '../config/repo-config.ts';
import { ConfigError } from '../errors.ts';
import type { ReactionTarget } from '../github/github-jobs.ts';
import type { Intent } from '../github/webhook-intent.ts';
import { policyViolations } from '../policy/policy-violations.ts';
import type { Decision, IntakeDeps } from '../tasks/intake.ts';
import { decided } from '../tasks/intake.ts';
import { hasEnvironment, touchesEnvironment } from './environment-key.ts';
import type { EnvironmentBuild } from './environment-store.ts';

type PushIntent = Extract<Intent, { type: 'push' }>;
type CommandIntent = Extract<Intent, { type: 'command' }>;

/**
 * A push to the default branch: a build is queued when it changed a key file or the airlock config
 * of a repository that configures an environment (the current environment serves until it is done).
 */
export function pushDecision(
  deps: IntakeDeps,
  intent: PushIntent,
  config: RepoConfig | ConfigError,
): Decision {
  if (!deps.environments) return decided({ status: 'ignored', outcome: 'environments are not built here' });
  if (config instanceof ConfigError)
    return decided({ status: 'ignored', outcome: `invalid ${REPO_CONFIG_PATH}: nothing to build` });
  if (!hasEnvironment(config)) return decided({ status: 'ignored', outcome: 'no environment configured' });
  if (intent.complete && !touchesEnvironment(config, intent.paths))
    return decided({ status: 'ignored', outcome: 'no key file changed' });
  // A build's VM takes the repository's limits and egress: within the operator's policy, as a task's.
  const violations = policyViolations(deps.rulesFor(intent.origin.repo.fullName), config);
  if (violations.length)
    return decided({
      status: 'refused',
      outcome: `beyond the operator policy: ${violations.map((v) => v.field).join(', ')}`,
    });
  const environments = deps.environments;
  const { origin } = intent;
  return {
    commit: async () => {
      const builds = await environments.enqueue({
        repoFullName: origin.repo.fullName,
        repoId: origin.repo.id,
        installationId: origin.installationId,
        config,
        trigger: {
          kind: 'push',
          by: origin.sender.login,
          commitSha: intent.after,
          ...(intent.url ? { url: intent.url } : {}),
          detail: intent.complete
            ? `key files changed at ${intent.after.slice(0, 12)}`
            : 'a forced or long push',
        },
      });
      return { status: 'done', outcome: queuedWords(builds) };
    },
    afterCommit: () => environments.wake(),
  };
}

/** `/airlock rebuild`: a build of the repository's environment, asked for by a person with write access. */
export function rebuildDecision(
  deps: IntakeDeps,
  intent: CommandIntent,
  config: RepoConfig,
  target: ReactionTarget,
): Decision {
  const { origin } = intent;
  const installationId = origin.installationId as number;
  const repo = origin.repo.fullName;
  const environments = deps.environments;
  if (!environments || !hasEnvironment(config)) {
    const why = environments
      ? `\`${REPO_CONFIG_PATH}\` on the default branch has no \`environment:\` section`
      : 'this airlock builds no environments (it has no sandbox)';
    return {
      commit: async () => {
        await deps.jobs.enqueue({
          kind: 'comment',
          installationId,
          repo,
          issueNumber: intent.issueNumber,
          body: `@${origin.sender.login}, there is no environment to rebuild: ${why}.`,
        });
        return { status: 'ignored', outcome: 'no environment configured' };
      },
    };
  }
  return {
    commit: async () => {
      const builds = await environments.enqueue({
        repoFullName: repo,
        repoId: origin.repo.id,
        installationId,
        config,
        trigger: {
          kind: 'command',
          by: origin.sender.login,
          issueNumber: intent.issueNumber,
          url: intent.url,
        },
      });
      await deps.jobs.enqueue({ kind: 'react', installationId, repo, target, content: '+1' });
      return { status: 'done', outcome: queuedWords(builds) };
    },
    afterCommit: () => environments.wake(),
  };
}

/** The outcome a delivery records for the builds it queued (one per host that rebuilds). */
function queuedWords(builds: readonly EnvironmentBuild[]): string {
  const hosts = builds.map((b) => (b.host ? `${b.id} on ${b.host}` : b.id));
  return `environment build${builds.length === 1 ? '' : 's'} ${hosts.join(', ')} queued`;
}
