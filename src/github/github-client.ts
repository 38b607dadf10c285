import { GitHubError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { splitRepo } from '../tasks/task.ts';
import { IssueThread } from '../tasks/task-thread.ts';
import { collaboratorPermission, type RepoPermission } from './collaborator-permission.ts';
import type { ReactionTarget } from './github-jobs.ts';
import {
  type AirlockOctokit,
  type GitHubAppCredentials,
  installationOctokit,
  type OctokitTuning,
} from './octokit-factory.ts';

export type { RepoPermission } from './collaborator-permission.ts';

/** A pull request as airlock needs it. */
export interface PullInfo {
  number: number;
  nodeId: string;
  htmlUrl: string;
  state: string;
  draft: boolean;
  title: string;
  headRef: string;
  headSha: string;
  headRepo: string | null;
  fork: boolean;
  baseRef: string;
  author: string;
}

/** Every GitHub call the control plane makes, as domain operations over one installation. */
export class GitHubClient {
  readonly #credentials: GitHubAppCredentials;
  readonly #log: Logger;
  readonly #tuning: OctokitTuning;
  readonly #clients = new Map<number, AirlockOctokit>();

  constructor(credentials: GitHubAppCredentials, log: Logger, tuning: OctokitTuning = {}) {
    this.#credentials = credentials;
    this.#log = log;
    this.#tuning = tuning;
  }

  /** The Octokit for an installation (created once, tokens refreshed by auth-app). */
  octokit(installationId: number): AirlockOctokit {
    let client = this.#clients.get(installationId);
    if (!client) {
      client = installationOctokit(this.#credentials, installationId, this.#log, this.#tuning);
      this.#clients.set(installationId, client);
    }
    return client;
  }

  /** The person's permission on the repository, as GitHub reports it (`none` when not a collaborator). */
  async permission(installationId: number, fullName: string, login: string): Promise<RepoPermission> {
    const { owner, repo } = splitRepo(fullName);
    const response = await call(`read ${login}'s permission on ${fullName}`, () =>
      this.octokit(installationId).rest.repos.getCollaboratorPermissionLevel({
        owner,
        repo,
        username: login,
      }),
    ).catch((error: unknown) => {
      if (error instanceof GitHubError && error.status === 404) return undefined;
      throw error;
    });
    if (!response) return 'none';
    const { level, problem } = collaboratorPermission(response.data);
    if (problem)
      this.#log.warn({ repo: fullName, login, problem }, 'collaborator permission not recognised: no access');
    return level;
  }

  /** A file's text at a ref, or undefined when it does not exist. */
  async fileText(
    installationId: number,
    fullName: string,
    path: string,
    ref?: string,
  ): Promise<string | undefined> {
    const { owner, repo } = splitRepo(fullName);
    try {
      const response = await call(`read ${path} from ${fullName}`, () =>
        this.octokit(installationId).rest.repos.getContent({ owner, repo, path, ...(ref ? { ref } : {}) }),
      );
      const data = response.data as { type?: string; content?: string; encoding?: string };
      if (data.type !== 'file' || typeof data.content !== 'string') return undefined;
      return Buffer.from(data.content, (data.encoding as BufferEncoding) ?? 'base64').toString('utf8');
    } catch (error) {
      if (error instanceof GitHubError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** Reads a pull request. */
  async pull(installationId: number, fullName: string, number: number): Promise<PullInfo> {
    const { owner, repo } = splitRepo(fullName);
    const { data } = await call(`read pull request #${number} of ${fullName}`, () =>
      this.octokit(installationId).rest.pulls.get({ owner, repo, pull_number: number }),
    );
    return toPullInfo(data);
  }

  /** The open PR whose head is `branch` in the same repository, if any. */
  async openPullForBranch(
    installationId: number,
    fullName: string,
    branch: string,
  ): Promise<PullInfo | undefined> {
    const { owner, repo } = splitRepo(fullName);
    const { data } = await call(`list pull requests of ${fullName}`, () =>
      this.octokit(installationId).rest.pulls.list({
        owner,
        repo,
        head: `${owner}:${branch}`,
        state: 'open',
      }),
    );
    const first = data[0];
    return first ? toPullInfo(first) : undefined;
  }

  /** Issue title, body and comments (with ids and edit times), for the prompt. */
  async issueThread(installationId: number, fullName: string, number: number): Promise<IssueThread> {
    const { owner, repo } = splitRepo(fullName);
    const octokit = this.octokit(installationId);
    const { data: issue } = await call(`read issue #${number} of ${fullName}`, () =>
      octokit.rest.issues.get({ owner, repo, issue_number: number }),
    );
    const comments = await call(`read comments of #${number} in ${fullName}`, () =>
      octokit.paginate(octokit.rest.issues.listComments, {
        owner,
        repo,
        issue_number: number,
        per_page: 100,
      }),
    );
    return IssueThread.parse({
      title: issue.title,
      body: issue.body ?? '',
      author: issue.user?.login ?? 'ghost',
      updatedAt: issue.updated_at,
      comments: comments.map((c) => ({
        id: c.id,
        author: c.user?.login ?? 'ghost',
        body: c.body ?? '',
        createdAt: c.created_at,
        updatedAt: c.updated_at,
      })),
    });
  }

  /** Adds a reaction to an issue, an issue comment or a review comment. */
  async react(
    installationId: number,
    fullName: string,
    target: ReactionTarget,
    content: '+1' | 'eyes' | 'rocket' | 'confused',
  ): Promise<void> {
    const { owner, repo } = splitRepo(fullName);
    const octokit = this.octokit(installationId);
    await call(`react on ${fullName}`, () => {
      if ('issueNumber' in target) {
        return octokit.rest.reactions.createForIssue({
          owner,
          repo,
          issue_number: target.issueNumber,
          content,
        });
      }
      if (target.kind === 'review_comment') {
        return octokit.rest.reactions.createForPullRequestReviewComment({
          owner,
          repo,
          comment_id: target.commentId,
          content,
        });
      }
      return octokit.rest.reactions.createForIssueComment({
        owner,
        repo,
        comment_id: target.commentId,
        content,
      });
    });
  }

  /** Posts a comment and returns its id. */
  async comment(
    installationId: number,
    fullName: string,
    issueNumber: number,
    body: string,
  ): Promise<number> {
    const { owner, repo } = splitRepo(fullName);
    const { data } = await call(`comment on #${issueNumber} of ${fullName}`, () =>
      this.octokit(installationId).rest.issues.createComment({
        owner,
        repo,
        issue_number: issueNumber,
        body,
      }),
    );
    return data.id;
  }

  /** Comments on a commit and returns the comment's id. */
  async commitComment(installationId: number, fullName: string, sha: string, body: string): Promise<number> {
    const { owner, repo } = splitRepo(fullName);
    const { data } = await call(`comment on commit ${sha.slice(0, 12)} of ${fullName}`, () =>
      this.octokit(installationId).rest.repos.createCommitComment({ owner, repo, commit_sha: sha, body }),
    );
    return data.id;
  }

  /** Replaces a comment's body. */
  async editComment(
    installationId: number,
    fullName: string,
    commentId: number,
    body: string,
  ): Promise<void> {
    const { owner, repo } = splitRepo(fullName);
    await call(`edit comment ${commentId} in ${fullName}`, () =>
      this.octokit(installationId).rest.issues.updateComment({ owner, repo, comment_id: commentId, body }),
    );
  }

  /** Creates or updates the `airlock` check run on a commit; returns its id. */
  async upsertCheckRun(
    installationId: number,
    fullName: string,
    input: {
      id?: number | null;
      headSha: string;
      status: 'queued' | 'in_progress' | 'completed';
      conclusion?: 'success' | 'failure' | 'neutral' | 'cancelled' | 'timed_out';
      detailsUrl: string;
      title: string;
      summary: string;
    },
  ): Promise<number> {
    const { owner, repo } = splitRepo(fullName);
    const octokit = this.octokit(installationId);
    const fields = {
      status: input.status,
      details_url: input.detailsUrl,
      output: { title: input.title, summary: input.summary },
      ...(input.conclusion ? { conclusion: input.conclusion, completed_at: new Date().toISOString() } : {}),
    };
    if (input.id) {
      await call(`update check run ${input.id} in ${fullName}`, () =>
        octokit.rest.checks.update({ owner, repo, check_run_id: input.id as number, ...fields }),
      );
      return input.id;
    }
    const { data } = await call(`create check run in ${fullName}`, () =>
      octokit.rest.checks.create({ owner, repo, name: 'airlock', head_sha: input.headSha, ...fields }),
    );
    return data.id;
  }

  /** Opens a PR, or returns the open one for the same head branch after updating its body. */
  async openOrUpdatePull(
    installationId: number,
    fullName: string,
    input: { head: string; base: string; title: string; body: string; draft: boolean },
  ): Promise<PullInfo> {
    const { owner, repo } = splitRepo(fullName);
    const octokit = this.octokit(installationId);
    const existing = await this.openPullForBranch(installationId, fullName, input.head);
    if (existing) {
      await call(`update pull request #${existing.number} of ${fullName}`, () =>
        octokit.rest.pulls.update({ owner, repo, pull_number: existing.number, body: input.body }),
      );
      return existing;
    }
    const { data } = await call(`open a pull request from ${input.head} in ${fullName}`, () =>
      octokit.rest.pulls.create({ owner, repo, ...input }),
    );
    return toPullInfo(data);
  }
}

/** Runs one GitHub call, turning Octokit's errors into a GitHubError that names the step. */
export async function call<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (cause) {
    const status = (cause as { status?: number }).status;
    const message = (cause as Error).message ?? String(cause);
    throw new GitHubError(
      `GitHub: could not ${step}: ${status ?? ''} ${message}`.replace(/\s+/g, ' ').trim(),
      {
        cause,
        ...(status !== undefined ? { status } : {}),
        hint:
          status === 401
            ? 'check APP_ID and PRIVATE_KEY'
            : status === 403
              ? "check the app's permissions on this repository"
              : undefined,
      },
    );
  }
}

function toPullInfo(data: {
  number: number;
  node_id: string;
  html_url: string;
  state: string;
  draft?: boolean;
  title: string;
  head: { ref: string; sha: string; repo: { id: number; full_name: string } | null };
  base: { ref: string; repo: { id: number } };
  user: { login: string } | null;
}): PullInfo {
  return {
    number: data.number,
    nodeId: data.node_id,
    htmlUrl: data.html_url,
    state: data.state,
    draft: Boolean(data.draft),
    title: data.title,
    headRef: data.head.ref,
    headSha: data.head.sha,
    headRepo: data.head.repo?.full_name ?? null,
    // A fork is a head in another repository than the base (GitHub's `repo.fork` says only
    // whether a repository is itself a fork, which is wrong both ways here).
    fork: data.head.repo === null || data.head.repo.id !== data.base.repo.id,
    baseRef: data.base.ref,
    author: data.user?.login ?? 'ghost',
  };
}
