import type { components } from '@octokit/openapi-types';

/** Plain, inspectable state of the GitHub emulator; tests assert on it directly. */

type Schemas = components['schemas'];
export type CheckRunStatus = NonNullable<Schemas['check-run']['status']>;
export type CheckRunConclusion = Schemas['check-run']['conclusion'];

export type Permission = 'admin' | 'maintain' | 'write' | 'triage' | 'read' | 'none';
export type PermissionLevel = 'read' | 'write';

export interface User {
  login: string;
  id: number;
  type: 'User' | 'Bot';
}

export interface Repo {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  defaultBranch: string;
  dir: string;
  private: boolean;
  fork: boolean;
  /** Full name of the parent when this repository is a fork. */
  parent?: string;
}

export interface Installation {
  id: number;
  account: string;
  /** Full names, or 'all' for every repository of the account. */
  repositories: string[] | 'all';
  permissions: Record<string, PermissionLevel>;
}

export interface Token {
  token: string;
  installationId: number;
  repositories: string[];
  permissions: Record<string, PermissionLevel>;
  /** Epoch milliseconds; tests may lower it to expire the token. */
  expiresAt: number;
  revoked: boolean;
}

export interface Issue {
  repo: string;
  number: number;
  title: string;
  body: string;
  user: string;
  labels: string[];
  state: 'open' | 'closed';
  updatedAt: string;
}

export interface Comment {
  id: number;
  repo: string;
  issueNumber: number;
  body: string;
  user: string;
  createdAt: string;
  updatedAt: string;
}

/** A comment on a commit. */
export interface CommitComment {
  id: number;
  repo: string;
  commitSha: string;
  body: string;
  user: string;
  createdAt: string;
}

/** A pull request review comment (a comment on a line of the diff). */
export interface ReviewComment {
  id: number;
  repo: string;
  pullNumber: number;
  body: string;
  user: string;
  path: string;
  line: number | null;
  createdAt: string;
}

export interface Reaction {
  id: number;
  repo: string;
  /** `issues/{n}`, `issues/comments/{id}` or `pulls/comments/{id}`. */
  subject: string;
  content: Schemas['reaction']['content'];
  user: string;
}

export interface Pull {
  repo: string;
  number: number;
  node_id: string;
  title: string;
  body: string;
  state: 'open' | 'closed';
  draft: boolean;
  merged: boolean;
  user: string;
  labels: string[];
  updatedAt: string;
  head: { ref: string; sha: string; repo: { id: number; full_name: string; fork: boolean } };
  base: { ref: string; sha: string; repo: { id: number; full_name: string } };
}

export interface CheckAnnotation {
  path: string;
  start_line: number;
  end_line: number;
  message: string;
  annotation_level: string;
  title?: string;
}

export interface CheckRun {
  id: number;
  repo: string;
  name: string;
  head_sha: string;
  status: CheckRunStatus;
  conclusion: CheckRunConclusion;
  details_url: string | null;
  output: { title?: string; summary?: string; text?: string } | null;
  app: { slug: string };
  annotations: CheckAnnotation[];
  check_suite_id?: number;
  started_at?: string;
  completed_at?: string | null;
  /** The job log served by the Actions logs endpoint (the check run id is the job id). */
  log?: string;
}

export interface CheckSuite {
  id: number;
  repo: string;
  head_sha: string;
  head_branch: string | null;
  status: Schemas['check-suite']['status'];
  conclusion: Schemas['check-suite']['conclusion'];
  app: { slug: string };
}

export interface WorkflowRun {
  id: number;
  repo: string;
  name: string;
  head_sha: string;
  head_branch: string | null;
  event: string;
  status: string;
  conclusion: string | null;
  check_suite_id: number;
  /** Check run ids; on GitHub an Actions job id is its check run id. */
  job_ids: number[];
}

export interface Push {
  repo: string;
  ref: string;
  before: string | null;
  after: string | null;
  token: string;
}

/** Everything the emulator knows. */
export class EmulatorState {
  readonly users = new Map<string, User>();
  readonly repos = new Map<string, Repo>();
  readonly installations = new Map<number, Installation>();
  /** `${fullName}:${login}` → role. */
  readonly permissions = new Map<string, Permission>();
  readonly tokens: Token[] = [];
  readonly issues: Issue[] = [];
  readonly comments: Comment[] = [];
  readonly commitComments: CommitComment[] = [];
  readonly reviewComments: ReviewComment[] = [];
  readonly reactions: Reaction[] = [];
  readonly pulls: Pull[] = [];
  readonly checkRuns: CheckRun[] = [];
  readonly checkSuites: CheckSuite[] = [];
  readonly workflowRuns: WorkflowRun[] = [];
  readonly reviewRequests: Array<{ repo: string; number: number; reviewers: string[] }> = [];
  readonly pushes: Push[] = [];
  /** Epoch milliseconds; tokens expire against it. */
  readonly now: () => number;
  #nextId = 1000;
  readonly #numbers = new Map<string, number>();

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  nextId(): number {
    return ++this.#nextId;
  }

  /** Issues and pulls share one number sequence per repository, as on GitHub. */
  nextNumber(repo: string): number {
    const n = (this.#numbers.get(repo) ?? 0) + 1;
    this.#numbers.set(repo, n);
    return n;
  }

  /** A known user, or a plausible one (bots end in `[bot]`). */
  user(login: string): User {
    return this.users.get(login) ?? { login, id: 1, type: login.endsWith('[bot]') ? 'Bot' : 'User' };
  }
}
