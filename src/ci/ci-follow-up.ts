import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import type { RepoConfig } from '../config/repo-config.ts';
import {
  actionsJobLog,
  changedPaths,
  checkRunAnnotations,
  checkRunsForCommit,
  markReadyForReview,
  requestReview,
} from '../github/ci-client.ts';
import type { GitHubClient } from '../github/github-client.ts';
import type { GitHubJobQueue } from '../github/github-jobs.ts';
import type { Intent } from '../github/webhook-intent.ts';
import type { Logger } from '../logger.ts';
import type { Db } from '../store/database.ts';
import { announce } from '../tasks/intake.ts';
import { isTerminal, type Task } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import { type CiFailure, decideAutofix, failureFingerprint, logTail, workflowFiles } from './ci-policy.ts';

/** What the CI follow-up needs. */
export interface CiFollowUpDeps {
  db: Db;
  clock: Clock;
  tasks: TaskStore;
  jobs: Pick<GitHubJobQueue, 'enqueue'>;
  github: GitHubClient;
  audit: AuditSink;
  log: Logger;
  appSlug: string;
  /** Cap on the log tail carried into a follow-up prompt, per failing check. */
  logTailBytes?: number;
}

const PASSING = new Set(['success', 'neutral', 'skipped']);

/**
 * Acts on a completed CI event for an agent branch: once every check on the agent's head commit
 * has finished, either marks the draft PR ready for review (and asks the requester to review) or,
 * when the repository enables it and the policy allows, starts a bounded follow-up with the
 * failing checks' annotations and log tails. Each head commit is judged once.
 */
export async function handleCiResult(
  deps: CiFollowUpDeps,
  intent: Extract<Intent, { type: 'ci' }>,
): Promise<string> {
  const repo = intent.origin.repo.fullName;
  const installationId = intent.origin.installationId as number;
  const task = findAgentTask(deps.tasks, repo, intent.headBranch, intent.headSha);
  if (!task) return 'not the head commit of an airlock branch';
  if (!isTerminal(task.state)) return `task ${task.id} is still ${task.state}`;
  if (task.prNumber === null) return `task ${task.id} has no pull request`;
  if (verdictFor(deps.db, repo, intent.headSha)) return 'already judged';

  const octokit = deps.github.octokit(installationId);
  const runs = (await checkRunsForCommit(octokit, repo, intent.headSha)).filter(
    (r) => r.appSlug !== deps.appSlug,
  );
  if (runs.length === 0 || runs.some((r) => r.status !== 'completed')) return 'waiting for the other checks';
  const config = task.config as unknown as RepoConfig;
  const failed = runs.filter((r) => !PASSING.has(r.conclusion ?? ''));
  const pr = await deps.github.pull(installationId, repo, task.prNumber);

  if (failed.length === 0) {
    const done: string[] = [];
    if (config.ci?.ready_for_review !== false && pr.draft) {
      await markReadyForReview(octokit, pr.nodeId);
      done.push('marked ready for review');
    }
    const requester = firstRequester(deps.tasks, task);
    if (config.ci?.request_reviewer !== false && requester && requester !== pr.author) {
      await requestReview(octokit, repo, pr.number, [requester]);
      done.push(`review requested from @${requester}`);
    }
    recordVerdict(deps, task, intent.headSha, 'passed', done.join('; ') || 'nothing to do', null, {
      checks: runs.length,
    });
    deps.jobs.enqueue({
      kind: 'comment',
      installationId,
      repo,
      issueNumber: pr.number,
      body: `✅ CI passed on ${intent.headSha.slice(0, 7)} (${runs.length} checks)${done.length ? `: ${done.join(', ')}.` : '.'}`,
    });
    return `CI passed: ${done.join('; ') || 'nothing to do'}`;
  }

  const failures: CiFailure[] = [];
  for (const run of failed.slice(0, 5)) {
    const annotations = await checkRunAnnotations(octokit, repo, run.id);
    const log = await actionsJobLog(octokit, repo, run.id);
    failures.push({
      name: run.name,
      conclusion: run.conclusion ?? 'failure',
      annotations: annotations.slice(0, 20),
      logTail: log ? logTail(log, deps.logTailBytes) : '',
    });
  }
  const fingerprint = failureFingerprint(failures);
  const earlier = deps.tasks.onBranch(repo, task.branch).filter((t) => t.kind === 'ci_fix');
  const decision = decideAutofix({
    autofix: config.ci?.autofix === true,
    maxAttempts: config.ci?.max_attempts ?? 2,
    fork: Boolean(task.context.fork),
    workflowFilesChanged: workflowFiles(await changedPaths(octokit, repo, pr.baseRef, intent.headSha)),
    previousAttempts: earlier.length,
    previousFingerprints: earlier.map((t) => String(t.context.ciFingerprint ?? '')),
    fingerprint,
  });
  const names = failures.map((f) => `\`${f.name}\``).join(', ');
  if (!decision.fix) {
    recordVerdict(deps, task, intent.headSha, 'failed', `stopped: ${decision.why}`, fingerprint, {
      failures: names,
    });
    deps.jobs.enqueue({
      kind: 'comment',
      installationId,
      repo,
      issueNumber: pr.number,
      body: `❌ CI failed on ${intent.headSha.slice(0, 7)} (${names}). airlock is not starting a follow-up: ${decision.why}`,
    });
    return `CI failed; no follow-up: ${decision.why}`;
  }
  const followUp = deps.tasks.create({
    installationId,
    repoFullName: repo,
    repoId: task.repoId,
    issueNumber: task.issueNumber,
    prNumber: task.prNumber,
    kind: 'ci_fix',
    branch: task.branch,
    baseRef: task.baseRef,
    actorLogin: firstRequester(deps.tasks, task) ?? task.actorLogin,
    actorId: task.actorId,
    triggerEvent: `${intent.source}.completed`,
    triggerUrl: pr.htmlUrl,
    deliveryId: intent.origin.deliveryId,
    instruction: `CI failed on ${intent.headSha.slice(0, 7)}: ${names}. Fix the failures.`,
    context: {
      ...task.context,
      ciFailures: failures,
      ciFingerprint: fingerprint,
      ciAttempt: decision.attempt,
    },
    config: task.config,
    parentTaskId: task.id,
    attempt: decision.attempt,
  });
  recordVerdict(deps, task, intent.headSha, 'failed', `follow-up ${followUp.id}`, fingerprint, {
    failures: names,
  });
  announce(deps, followUp);
  return `CI failed; follow-up ${followUp.id} (attempt ${decision.attempt})`;
}

function findAgentTask(tasks: TaskStore, repo: string, branch: string | null, sha: string): Task | undefined {
  if (branch) {
    const latest = tasks.latestOnBranch(repo, branch);
    return latest?.headSha === sha ? latest : undefined;
  }
  return tasks.list({ repoFullName: repo, limit: 200 }).find((t) => t.headSha === sha);
}

function firstRequester(tasks: TaskStore, task: Task): string | undefined {
  return tasks.onBranch(task.repoFullName, task.branch)[0]?.actorLogin;
}

function verdictFor(db: Db, repo: string, sha: string): unknown {
  return db
    .prepare('SELECT verdict FROM ci_verdicts WHERE repo_full_name = ? AND head_sha = ?')
    .get(repo, sha);
}

function recordVerdict(
  deps: CiFollowUpDeps,
  task: Task,
  sha: string,
  verdict: 'passed' | 'failed',
  action: string,
  fingerprint: string | null,
  detail: Record<string, unknown>,
): void {
  deps.db
    .prepare(
      `INSERT INTO ci_verdicts (repo_full_name, branch, head_sha, task_id, verdict, action, fingerprint, detail_json, decided_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    )
    .run(
      task.repoFullName,
      task.branch,
      sha,
      task.id,
      verdict,
      action,
      fingerprint,
      JSON.stringify(detail),
      deps.clock.now().toISOString(),
    );
  deps.audit.append(task.id, 'ci.verdict', { headSha: sha, verdict, action, fingerprint, ...detail });
}
