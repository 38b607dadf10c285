import type { GitHubJob } from '../github/github-jobs.ts';
import { untrustedCodeBlock, untrustedCodeSpan } from '../github/untrusted-markdown.ts';
import type { EnvironmentBuild } from './environment-store.ts';

/** Lines of a failed build's log quoted on GitHub. */
const TAIL_LINES = 30;

/** Where a build's page is, under AIRLOCK_PUBLIC_URL. */
export function buildPagePath(buildId: string): string {
  return `/environments/builds/${buildId}`;
}

/**
 * The comment a failed build leaves on the issue or pull request that asked for it: its reason,
 * the end of its log (untrusted: the repository's own setup printed it) and a link to the rest.
 */
export function buildFailureComment(build: EnvironmentBuild, publicUrl: string): string {
  const tail = (build.logTail ?? '').trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
  const served =
    build.trigger.kind === 'task'
      ? 'The task that needed it fails with this reason.'
      : 'Tasks keep running on the last good environment, if there is one.';
  return [
    `⚠️ airlock could not build the environment of ${build.repoFullName} (build \`${build.id}\`, ${triggerWords(build)}).`,
    '',
    `Reason: ${untrustedCodeSpan(build.reason ?? 'none recorded', 500)}`,
    '',
    served,
    '',
    ...(tail
      ? [
          '<details><summary>End of the build log</summary>',
          '',
          untrustedCodeBlock(tail, 6000),
          '',
          '</details>',
          '',
        ]
      : []),
    `Full log and audit record: ${publicUrl.replace(/\/$/, '')}${buildPagePath(build.id)}`,
    '',
    // Set by airlock itself (runBuild, Environments.start), never by the repository's commands.
    build.reason?.startsWith('interrupted: ')
      ? 'airlock was stopped during the build: comment `/airlock rebuild` on any issue to build it again.'
      : 'Fix `environment:` in `.github/airlock.yml` or the files its setup uses, then comment `/airlock rebuild`.',
  ].join('\n');
}

/**
 * The GitHub job that reports a failed build where the person who caused it looks: the issue or
 * pull request that asked for it, or the commit whose push triggered it. Undefined for a build that
 * did not fail, or has nowhere on GitHub to say so.
 */
export function buildFailureJob(build: EnvironmentBuild, publicUrl: string): GitHubJob | undefined {
  const { issueNumber, commitSha } = build.trigger;
  if (build.state !== 'failed' || build.installationId === null) return undefined;
  const where = { installationId: build.installationId, repo: build.repoFullName };
  const body = buildFailureComment(build, publicUrl);
  if (issueNumber !== undefined) return { kind: 'comment', ...where, issueNumber, body };
  if (build.trigger.kind === 'push' && commitSha)
    return { kind: 'commit_comment', ...where, commitSha, body };
  return undefined;
}

function triggerWords(build: EnvironmentBuild): string {
  const { trigger } = build;
  switch (trigger.kind) {
    case 'task':
      return `needed by task ${trigger.taskId ?? ''} of @${trigger.by}`.replace('  ', ' ');
    case 'command':
      return `asked for by @${trigger.by}`;
    case 'push':
      return `after a push by @${trigger.by}`;
    case 'stale':
      return `the environment was stale: ${trigger.detail ?? 'unknown'}`;
    case 'local':
      return 'for a local run';
  }
}
