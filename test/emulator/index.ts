import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import { handleRequest, type InjectedFailure } from './emulator-server.ts';
import {
  type CheckAnnotation,
  type CheckRun,
  type CheckRunConclusion,
  type CheckRunStatus,
  type Comment,
  EmulatorState,
  type Issue,
  type Permission,
  type PermissionLevel,
  type Pull,
  type Repo,
  type ReviewComment,
  type User,
  type WorkflowRun,
} from './emulator-state.ts';
import { resolveRev } from './git-cli.ts';
import { forkBareRepo, seedBareRepo } from './seed-repo.ts';

export type {
  CheckAnnotation,
  CheckRun,
  CheckSuite,
  Comment,
  EmulatorState,
  Installation,
  Issue,
  Permission,
  Pull,
  Push,
  Reaction,
  Repo,
  ReviewComment,
  Token,
  User,
  WorkflowRun,
} from './emulator-state.ts';

/** A CI job to report on a commit (as GitHub Actions would): a check run with annotations and a log. */
export interface CiJobInput {
  name: string;
  conclusion: CheckRunConclusion;
  status?: CheckRunStatus;
  annotations?: CheckAnnotation[];
  log?: string;
}

/** A running GitHub emulator. See README.md for what it emulates. */
export interface GitHubEmulator {
  /** `http://127.0.0.1:PORT`: git remotes and web links live here. */
  readonly url: string;
  /** REST base for Octokit's `baseUrl` (as on GitHub Enterprise Server). */
  readonly apiUrl: string;
  /** Base of every `html_url`. */
  readonly webUrl: string;
  readonly app: {
    id: number;
    slug: string;
    privateKey: string;
    webhookSecret: string;
    clientId: string;
    clientSecret: string;
  };
  readonly state: EmulatorState;
  /** Every REST and git request, in order. */
  readonly requests: Array<{ method: string; path: string; status: number; at: number }>;
  gitUrl(owner: string, repo: string): string;
  addUser(login: string, options?: { type?: 'User' | 'Bot'; id?: number }): User;
  /** Creates a bare repository with one commit of `files` (a fork copies its parent's refs). */
  createRepo(
    owner: string,
    name: string,
    options?: {
      files?: Record<string, string>;
      defaultBranch?: string;
      private?: boolean;
      fork?: { of: string };
    },
  ): Promise<Repo>;
  /** Installs the app on an account; returns the installation id. */
  installApp(
    account: string,
    options?: { repositories?: string[]; permissions?: Record<string, PermissionLevel> },
  ): number;
  setPermission(fullName: string, login: string, permission: Permission): void;
  createIssue(
    fullName: string,
    input: { title: string; body?: string; user: string; labels?: string[] },
  ): Issue;
  addComment(fullName: string, issueNumber: number, input: { body: string; user: string }): Comment;
  /** Adds a review comment on a line of a pull request's diff. */
  addReviewComment(
    fullName: string,
    pullNumber: number,
    input: { body: string; user: string; path: string; line?: number },
  ): ReviewComment;
  /** Adds a CI check run (as another app would) with optional annotations and job log. */
  addCheckRun(fullName: string, input: CiJobInput & { headSha: string; appSlug?: string }): CheckRun;
  /** Adds an Actions workflow run: a check suite whose jobs are check runs (job id = check run id). */
  addWorkflowRun(
    fullName: string,
    input: { name: string; headSha: string; headBranch?: string; event?: string; jobs: CiJobInput[] },
  ): { run: WorkflowRun; jobs: CheckRun[] };
  /** Makes the next `times` matching requests (REST path without `/api/v3`, or git path) fail. */
  failNext(
    match: { method?: string; path: RegExp },
    response: { status: number; headers?: Record<string, string>; body?: unknown },
    times?: number,
  ): void;
  /** Ends every failure injected by failNext. */
  clearFailures(): void;
  /** Opens a pull request as a person, from a branch of the same repository. */
  openPull(
    fullName: string,
    input: { head: string; base: string; title: string; user: string },
  ): Promise<Pull>;
  branchSha(fullName: string, branch: string): Promise<string | undefined>;
  /** Signs `payload` with X-Hub-Signature-256 (or sends `signature` as given) and POSTs it. */
  sendWebhook(
    targetUrl: string,
    event: string,
    payload: unknown,
    options?: { deliveryId?: string; secret?: string; signature?: string },
  ): Promise<Response>;
  close(): Promise<void>;
}

const DEFAULT_PERMISSIONS: Record<string, PermissionLevel> = {
  contents: 'write',
  issues: 'write',
  pull_requests: 'write',
  checks: 'write',
  actions: 'read',
  metadata: 'read',
};

/** Starts the emulator on 127.0.0.1 and a free port. `now` is the clock tokens expire against. */
export async function startGitHubEmulator(
  options: { appSlug?: string; now?: () => number } = {},
): Promise<GitHubEmulator> {
  const state = new EmulatorState(options.now);
  const root = mkdtempSync(path.join(tmpdir(), 'airlock-gh-'));
  const gitRoot = path.join(root, 'git');
  mkdirSync(gitRoot);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const app = {
    id: 4242,
    slug: options.appSlug ?? 'airlock-test',
    privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    webhookSecret: randomBytes(16).toString('hex'),
    clientId: `Iv1.${randomBytes(8).toString('hex')}`,
    clientSecret: randomBytes(20).toString('hex'),
  };
  const failures: InjectedFailure[] = [];
  const requests: GitHubEmulator['requests'] = [];
  let url = '';
  const deps = { state, app, gitRoot, failures, requests, urls: () => ({ url, apiUrl: `${url}/api/v3` }) };
  const server = createServer((req, res) => {
    handleRequest(deps, req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: String(error) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const iso = () => new Date(state.now()).toISOString();

  const addCheckRun: GitHubEmulator['addCheckRun'] = (fullName, input) => {
    const run: CheckRun = {
      id: state.nextId(),
      repo: fullName,
      name: input.name,
      head_sha: input.headSha,
      status: input.status ?? (input.conclusion === null ? 'in_progress' : 'completed'),
      conclusion: input.conclusion,
      details_url: null,
      output: null,
      app: { slug: input.appSlug ?? 'github-actions' },
      annotations: input.annotations ?? [],
      started_at: iso(),
      completed_at: input.conclusion === null ? null : iso(),
      ...(input.log !== undefined ? { log: input.log } : {}),
    };
    state.checkRuns.push(run);
    return run;
  };

  return {
    url,
    apiUrl: `${url}/api/v3`,
    webUrl: url,
    app,
    state,
    requests,
    gitUrl: (owner, repo) => `${url}/${owner}/${repo}.git`,
    addUser: (login, o = {}) => {
      const user: User = { login, id: o.id ?? state.nextId(), type: o.type ?? 'User' };
      state.users.set(login, user);
      return user;
    },
    createRepo: async (owner, name, o = {}) => {
      const fullName = `${owner}/${name}`;
      if (state.repos.has(fullName)) throw new Error(`emulator: ${fullName} already exists`);
      const dir = path.join(gitRoot, owner, `${name}.git`);
      const parent = o.fork ? state.repos.get(o.fork.of) : undefined;
      if (o.fork && !parent) throw new Error(`emulator: cannot fork ${o.fork.of}: create it first`);
      if (parent) await forkBareRepo(parent.dir, dir);
      else {
        await seedBareRepo(dir, {
          defaultBranch: o.defaultBranch ?? 'main',
          files: o.files ?? { 'README.md': `# ${name}\n` },
        });
      }
      const repo: Repo = {
        id: state.nextId(),
        owner,
        name,
        fullName,
        defaultBranch: parent?.defaultBranch ?? o.defaultBranch ?? 'main',
        dir,
        private: o.private ?? parent?.private ?? true,
        fork: Boolean(parent),
        ...(parent ? { parent: parent.fullName } : {}),
      };
      state.repos.set(fullName, repo);
      return repo;
    },
    installApp: (account, o = {}) => {
      const id = state.nextId();
      state.installations.set(id, {
        id,
        account,
        repositories: o.repositories ?? 'all',
        permissions: { ...(o.permissions ?? DEFAULT_PERMISSIONS), metadata: 'read' },
      });
      return id;
    },
    setPermission: (fullName, login, permission) => {
      if (!state.users.has(login)) state.users.set(login, state.user(login));
      state.permissions.set(`${fullName}:${login}`, permission);
    },
    createIssue: (fullName, input) => {
      const issue: Issue = {
        repo: fullName,
        number: state.nextNumber(fullName),
        title: input.title,
        body: input.body ?? '',
        user: input.user,
        labels: input.labels ?? [],
        state: 'open',
        updatedAt: iso(),
      };
      state.issues.push(issue);
      return issue;
    },
    addComment: (fullName, issueNumber, input) => {
      const comment: Comment = {
        id: state.nextId(),
        repo: fullName,
        issueNumber,
        body: input.body,
        user: input.user,
        createdAt: iso(),
        updatedAt: iso(),
      };
      state.comments.push(comment);
      return comment;
    },
    addReviewComment: (fullName, pullNumber, input) => {
      const comment: ReviewComment = {
        id: state.nextId(),
        repo: fullName,
        pullNumber,
        body: input.body,
        user: input.user,
        path: input.path,
        line: input.line ?? null,
        createdAt: iso(),
      };
      state.reviewComments.push(comment);
      return comment;
    },
    addCheckRun,
    addWorkflowRun: (fullName, input) => {
      const suiteId = state.nextId();
      const jobs = input.jobs.map((job) => {
        const run = addCheckRun(fullName, { ...job, headSha: input.headSha });
        run.check_suite_id = suiteId;
        return run;
      });
      const failed = jobs.find(
        (j) => j.conclusion && j.conclusion !== 'success' && j.conclusion !== 'skipped',
      );
      const done = jobs.every((j) => j.status === 'completed');
      const conclusion = done ? (failed?.conclusion ?? 'success') : null;
      const status = done ? 'completed' : 'in_progress';
      state.checkSuites.push({
        id: suiteId,
        repo: fullName,
        head_sha: input.headSha,
        head_branch: input.headBranch ?? null,
        status,
        conclusion,
        app: { slug: 'github-actions' },
      });
      const run: WorkflowRun = {
        id: state.nextId(),
        repo: fullName,
        name: input.name,
        head_sha: input.headSha,
        head_branch: input.headBranch ?? null,
        event: input.event ?? 'push',
        status,
        conclusion,
        check_suite_id: suiteId,
        job_ids: jobs.map((j) => j.id),
      };
      state.workflowRuns.push(run);
      for (const job of jobs) job.details_url = `${url}/${fullName}/actions/runs/${run.id}/job/${job.id}`;
      return { run, jobs };
    },
    failNext: (match, response, times = 1) => {
      failures.push({ ...match, response, left: times });
    },
    clearFailures: () => {
      failures.length = 0;
    },
    openPull: async (fullName, input) => {
      const repo = state.repos.get(fullName);
      if (!repo) throw new Error(`emulator: no repository ${fullName}`);
      const headSha = await resolveRev(repo.dir, `refs/heads/${input.head}`);
      const baseSha = await resolveRev(repo.dir, `refs/heads/${input.base}`);
      if (!headSha || !baseSha) throw new Error(`emulator: ${input.head} or ${input.base} does not exist`);
      const number = state.nextNumber(fullName);
      const pull: Pull = {
        repo: fullName,
        number,
        node_id: `PR_${repo.id}_${number}`,
        title: input.title,
        body: '',
        state: 'open',
        draft: false,
        merged: false,
        user: input.user,
        labels: [],
        updatedAt: iso(),
        head: { ref: input.head, sha: headSha, repo: { id: repo.id, full_name: fullName, fork: repo.fork } },
        base: { ref: input.base, sha: baseSha, repo: { id: repo.id, full_name: fullName } },
      };
      state.pulls.push(pull);
      return pull;
    },
    branchSha: async (fullName, branch) => {
      const repo = state.repos.get(fullName);
      return repo ? resolveRev(repo.dir, `refs/heads/${branch}`) : undefined;
    },
    sendWebhook: async (targetUrl, event, payload, o = {}) => {
      const body = JSON.stringify(payload);
      const signature = o.signature ?? (await sign(o.secret ?? app.webhookSecret, body));
      return fetch(targetUrl, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-github-event': event,
          'x-github-delivery': o.deliveryId ?? crypto.randomUUID(),
          'x-github-hook-id': '1',
          'x-github-hook-installation-target-id': String(app.id),
          'x-github-hook-installation-target-type': 'integration',
          'x-hub-signature-256': signature,
          'user-agent': 'GitHub-Hookshot/emulator',
        },
      });
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
