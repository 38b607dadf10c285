/** Plain, inspectable state of the GitHub emulator; tests assert on it directly. */

export type Permission = 'admin' | 'maintain' | 'write' | 'triage' | 'read' | 'none';

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
}

export interface Installation {
  id: number;
  account: string;
  /** Full names, or 'all' for every repository of the account. */
  repositories: string[] | 'all';
  permissions: Record<string, 'read' | 'write'>;
}

export interface Token {
  token: string;
  installationId: number;
  repositories: string[];
  permissions: Record<string, 'read' | 'write'>;
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

export interface Reaction {
  id: number;
  repo: string;
  subject: string;
  content: string;
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
  user: string;
  head: { ref: string; sha: string; repo: { full_name: string; fork: boolean } };
  base: { ref: string; repo: { full_name: string } };
}

export interface CheckRun {
  id: number;
  repo: string;
  name: string;
  head_sha: string;
  status: string;
  conclusion: string | null;
  details_url: string | null;
  output: { title?: string; summary?: string } | null;
  app: { slug: string };
  annotations: Array<{
    path: string;
    start_line: number;
    end_line: number;
    message: string;
    annotation_level: string;
  }>;
  log?: string;
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
  readonly permissions = new Map<string, Permission>();
  readonly tokens: Token[] = [];
  readonly issues: Issue[] = [];
  readonly comments: Comment[] = [];
  readonly reactions: Reaction[] = [];
  readonly pulls: Pull[] = [];
  readonly checkRuns: CheckRun[] = [];
  readonly reviewRequests: Array<{ repo: string; number: number; reviewers: string[] }> = [];
  readonly pushes: Push[] = [];
  #nextId = 1000;
  readonly #numbers = new Map<string, number>();

  nextId(): number {
    return ++this.#nextId;
  }

  /** Issues and pulls share one number sequence per repository, as on GitHub. */
  nextNumber(repo: string): number {
    const n = (this.#numbers.get(repo) ?? 0) + 1;
    this.#numbers.set(repo, n);
    return n;
  }

  user(login: string): User {
    return this.users.get(login) ?? { login, id: 0, type: 'User' };
  }
}
