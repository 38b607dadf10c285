import type { AuditSink } from '../audit-sink.ts';
import { parseRepoConfig, REPO_CONFIG_PATH, type RepoConfig } from '../config/repo-config.ts';
import { ConfigError } from '../errors.ts';
import {
  actionsJobLog,
  type CheckRunInfo,
  changedPaths,
  checkRunAnnotations,
  checkRunsForCommit,
  unfinishedWorkflowRuns,
} from '../github/ci-client.ts';
import type { GitHubClient, PullInfo } from '../github/github-client.ts';
import type { GitHubJobQueue } from '../github/github-jobs.ts';
import type { Intent } from '../github/webhook-intent.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import { announce } from '../tasks/intake.ts';
import type { Task } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import { withTraceParent } from '../tracing/trace-parent.ts';
import { branchHead, requesterOf } from './ci-branch.ts';
import { type CiFailure, decideAutofix, failureFingerprint, logTail, workflowFiles } from './ci-policy.ts';
import type { CiVerdicts } from './ci-verdicts.ts';

/** What the CI follow-up needs. */
export interface CiFollowUpDeps {
  /** The database: a verdict and what it starts are written in one transaction. */
  store: Pick<Store, 'transaction'>;
  tasks: TaskStore;
  verdicts: CiVerdicts;
  jobs: Pick<GitHubJobQueue, 'enqueue'>;
  github: Pick<GitHubClient, 'octokit' | 'pull' | 'fileText'>;
  audit: AuditSink;
  log: Logger;
  appSlug: string;
  /** Cap on the log tail carried into a follow-up prompt, per failing check. */
  logTailBytes?: number;
}

/** A commit CI finished on (or may have): from a CI webhook, or a task that ended on its branch. */
export interface CiHead {
  installationId: number;
  repo: { fullName: string; defaultBranch: string | null };
  headSha: string;
  headBranch: string | null;
  /** What made airlock look: recorded on a follow-up it starts. */
  trigger: { event: string; deliveryId: string | null };
}

/** The commit a CI webhook is about. */
export function ciHeadOf(intent: Extract<Intent, { type: 'ci' }>): CiHead {
  const { origin } = intent;
  return {
    installationId: origin.installationId as number,
    repo: { fullName: origin.repo.fullName, defaultBranch: origin.repo.defaultBranch },
    headSha: intent.headSha,
    headBranch: intent.headBranch,
    trigger: {
      event: `${origin.event}${origin.action ? `.${origin.action}` : ''}`,
      deliveryId: origin.deliveryId,
    },
  };
}

type CiSettings = RepoConfig['ci'] & { note?: string };

const PASSING = new Set(['success', 'neutral', 'skipped']);
/** Conclusions an agent can act on; cancelled, stale or action_required checks need a person. */
const FIXABLE = new Set(['failure', 'timed_out']);
const MAX_CHECKS_IN_PROMPT = 5;
const MAX_ANNOTATIONS_PER_CHECK = 20;
const ACTIONS_APP = 'github-actions';

/**
 * Acts on a completed CI event for an agent branch: once every check on the agent's head commit
 * has finished, either marks the draft PR ready for review (and asks the requester to review) or,
 * when the repository enables it and the policy allows, starts a bounded follow-up with the
 * failing checks' annotations and log tails. Each head commit is judged once (a failed one may
 * later pass when a person re-runs a check). GitHub writes go through the durable job queue, in
 * the same transaction as the verdict, so a retry never acts twice; of two judgements of one head
 * at once, the one whose verdict is not written acts on nothing.
 */
export async function handleCiResult(deps: CiFollowUpDeps, intent: CiHead): Promise<string> {
  const repo = intent.repo.fullName;
  const { installationId } = intent;
  const head = await branchHead(deps.tasks, repo, intent.headBranch, intent.headSha);
  if ('why' in head) return head.why;
  const { task } = head;
  if (task.prNumber === null) return `task ${task.id} has no pull request`;
  const earlier = await deps.verdicts.find(repo, intent.headSha);
  if (earlier?.verdict === 'passed') return 'already judged';

  const octokit = deps.github.octokit(installationId);
  const runs = (await checkRunsForCommit(octokit, repo, intent.headSha)).filter(
    (r) => r.appSlug !== deps.appSlug,
  );
  if (runs.length === 0 || runs.some((r) => r.status !== 'completed')) return 'waiting for the other checks';
  const unfinished = await unfinishedWorkflowRuns(octokit, repo, intent.headSha);
  if (unfinished.length) return `waiting for workflow ${unfinished.join(', ')}`;
  const failed = runs.filter((r) => !PASSING.has(r.conclusion ?? ''));
  if (earlier && failed.length > 0) return 'already judged';

  const pr = await deps.github.pull(installationId, repo, task.prNumber);
  if (pr.state !== 'open') return `pull request #${pr.number} is ${pr.state}`;
  if (pr.headSha !== intent.headSha) return `pull request #${pr.number} has moved on to ${pr.headSha}`;
  const ci = await currentCiSettings(deps, installationId, repo, intent.repo.defaultBranch, task);
  const judged = { task, pr, runs, ci, installationId, sha: intent.headSha };
  if (failed.length === 0) return passed(deps, judged);
  return failedChecks(deps, judged, failed, intent);
}

interface Judged {
  task: Task;
  pr: PullInfo;
  runs: CheckRunInfo[];
  ci: CiSettings;
  installationId: number;
  sha: string;
}

async function passed(
  deps: CiFollowUpDeps,
  { task, pr, runs, ci, installationId, sha }: Judged,
): Promise<string> {
  const repo = task.repoFullName;
  const requester = await requesterOf(deps.tasks, task);
  const markReady = ci.ready_for_review && pr.draft;
  const reviewer = ci.request_reviewer && requester && requester !== pr.author ? requester : undefined;
  const done = [
    ...(markReady ? ['marked ready for review'] : []),
    ...(reviewer ? [`review requested from @${reviewer}`] : []),
  ];
  const action = done.join(', ') || 'nothing to do';
  return deps.store.transaction(async () => {
    if (!(await recordVerdict(deps, task, sha, 'passed', action, null, { checks: runs.length })))
      return 'already judged';
    if (markReady) {
      await deps.jobs.enqueue(
        { kind: 'ready_for_review', installationId, repo, pullNumber: pr.number, pullNodeId: pr.nodeId },
        { taskId: task.id },
      );
    }
    if (reviewer) {
      await deps.jobs.enqueue(
        { kind: 'request_review', installationId, repo, pullNumber: pr.number, reviewers: [reviewer] },
        { taskId: task.id },
      );
    }
    await deps.jobs.enqueue(
      {
        kind: 'comment',
        installationId,
        repo,
        issueNumber: pr.number,
        body: `✅ CI passed on ${sha.slice(0, 7)} (${plural(runs.length, 'check')})${done.length ? `: ${action}.` : '.'}`,
      },
      { taskId: task.id },
    );
    return `CI passed: ${action}`;
  });
}

async function failedChecks(
  deps: CiFollowUpDeps,
  { task, pr, ci, installationId, sha }: Judged,
  failed: CheckRunInfo[],
  intent: CiHead,
): Promise<string> {
  const repo = task.repoFullName;
  const octokit = deps.github.octokit(installationId);
  const failures: CiFailure[] = [];
  for (const run of failed.slice(0, MAX_CHECKS_IN_PROMPT)) {
    const annotations = await checkRunAnnotations(octokit, repo, run.id);
    // For Actions, a check run's id is its job's id; other apps' checks have no Actions log.
    const log = run.appSlug === ACTIONS_APP ? await actionsJobLog(octokit, repo, run.id) : undefined;
    failures.push({
      name: run.name,
      conclusion: run.conclusion ?? 'failure',
      annotations: annotations.slice(0, MAX_ANNOTATIONS_PER_CHECK),
      logTail: logTail(log ?? run.output, deps.logTailBytes),
    });
  }
  const fingerprint = failureFingerprint(failures);
  // Bounded per PR: every CI follow-up on the branch counts, whoever asked for the work since.
  const attempts = (await deps.tasks.onBranch(repo, task.branch)).filter((t) => t.kind === 'ci_fix');
  const decision = decideAutofix({
    autofix: ci.autofix,
    maxAttempts: ci.max_attempts,
    fork: Boolean(task.context.fork) || pr.fork,
    workflowFilesChanged: workflowFiles(await changedPaths(octokit, repo, pr.baseRef, sha)),
    previousAttempts: attempts.length,
    previousFingerprints: attempts.map((t) => t.context.ciFingerprint ?? ''),
    fingerprint,
    unfixable: failed
      .filter((r) => !FIXABLE.has(r.conclusion ?? ''))
      .map((r) => ({ name: r.name, conclusion: r.conclusion ?? 'unknown' })),
  });
  const names = failed.map((f) => `\`${f.name}\``).join(', ');
  const why = decision.fix ? '' : `${decision.why}${ci.note ? ` (${ci.note})` : ''}`;
  const comment = (body: string) =>
    deps.jobs.enqueue(
      { kind: 'comment', installationId, repo, issueNumber: pr.number, body },
      { taskId: task.id },
    );
  if (!decision.fix) {
    return deps.store.transaction(async () => {
      const details = { failures: names };
      if (!(await recordVerdict(deps, task, sha, 'failed', `not retried: ${why}`, fingerprint, details)))
        return 'already judged';
      await comment(
        `❌ CI failed on ${sha.slice(0, 7)} (${names}). airlock is not starting a follow-up: ${why}`,
      );
      return `CI failed; no follow-up: ${why}`;
    });
  }
  const requester = (await requesterOf(deps.tasks, task)) ?? task.actorLogin;
  const followUp = await deps.store.transaction(async () => {
    // The decision above awaited GitHub: another judgement of this head (its check suite and a
    // recheck, say) may have started its follow-up meanwhile. One follow-up per failing head.
    const raced = (await deps.tasks.onBranch(repo, task.branch)).find(
      (t) => t.kind === 'ci_fix' && t.context.ciHeadSha === sha,
    );
    if (raced) return raced;
    // Or judged it without one: its verdict stands. (On PostgreSQL the transaction is serializable,
    // so two judgements cannot both find none here and both go on.)
    if (await deps.verdicts.find(repo, sha)) return undefined;
    const created = await deps.tasks.create({
      installationId,
      repoFullName: repo,
      repoId: task.repoId,
      issueNumber: task.issueNumber,
      prNumber: pr.number,
      kind: 'ci_fix',
      branch: task.branch,
      baseRef: task.baseRef,
      start: { from: 'own_branch' },
      actorLogin: requester,
      actorId: requester === task.actorLogin ? task.actorId : null,
      triggerEvent: intent.trigger.event,
      triggerUrl: pr.htmlUrl,
      deliveryId: intent.trigger.deliveryId,
      instruction: `CI failed on ${sha.slice(0, 7)}: ${names}. Fix the failures.`,
      // Only what describes the work: an earlier review comment's hunk is not this task's subject.
      context: withTraceParent({
        ...(task.context.issueTitle ? { issueTitle: task.context.issueTitle } : {}),
        ...(task.context.headRef ? { headRef: task.context.headRef } : {}),
        fork: Boolean(task.context.fork),
        ciFailures: failures,
        ciFingerprint: fingerprint,
        ciHeadSha: sha,
      }),
      thread: task.thread,
      config: task.config,
      parentTaskId: task.id,
      attempt: decision.attempt,
    });
    const action = `follow-up task \`${created.id}\` started (attempt ${decision.attempt} of ${ci.max_attempts})`;
    await recordVerdict(deps, task, sha, 'failed', action, fingerprint, {
      failures: names,
      followUp: created.id,
    });
    await comment(`❌ CI failed on ${sha.slice(0, 7)} (${names}). ${capitalise(action)} on this branch.`);
    await announce(deps, created);
    return created;
  });
  if (!followUp) return 'already judged';
  return `CI failed; follow-up ${followUp.id} (attempt ${decision.attempt})`;
}

/**
 * The repository's CI settings now, from .github/airlock.yml on the default branch (never the
 * agent's branch, which the agent could edit), so turning auto-fix off stops in-flight PRs too.
 * An invalid file keeps the task's settings but turns auto-fix off.
 */
async function currentCiSettings(
  deps: CiFollowUpDeps,
  installationId: number,
  repo: string,
  defaultBranch: string | null,
  task: Task,
): Promise<CiSettings> {
  const text = await deps.github.fileText(installationId, repo, REPO_CONFIG_PATH, defaultBranch ?? undefined);
  try {
    return parseRepoConfig(text).ci;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return {
      ...task.config.ci,
      autofix: false,
      note: `${REPO_CONFIG_PATH} on the default branch is invalid`,
    };
  }
}

/** Records a verdict and tells the task's record and tracking comment; false when it was not written. */
async function recordVerdict(
  deps: CiFollowUpDeps,
  task: Task,
  sha: string,
  verdict: 'passed' | 'failed',
  action: string,
  fingerprint: string | null,
  detail: Record<string, unknown>,
): Promise<boolean> {
  const written = await deps.verdicts.record({
    repoFullName: task.repoFullName,
    branch: task.branch,
    headSha: sha,
    taskId: task.id,
    verdict,
    action,
    fingerprint,
    detail,
  });
  if (!written) return false;
  deps.audit.append(task.id, 'ci.verdict', { headSha: sha, verdict, action, fingerprint, ...detail });
  await deps.jobs.enqueue({ kind: 'tracking', taskId: task.id });
  return true;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
