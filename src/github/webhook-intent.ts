import { z } from 'zod';

const Account = z.object({ login: z.string(), id: z.number(), type: z.string() });
const Repository = z.object({
  id: z.number(),
  full_name: z.string(),
  default_branch: z.string().optional(),
  owner: z.object({ login: z.string() }),
});
const Installation = z.object({ id: z.number() }).optional();
const Issue = z.object({
  number: z.number(),
  title: z.string(),
  html_url: z.string(),
  pull_request: z.object({}).passthrough().optional(),
});
const PullRequest = z.object({
  number: z.number(),
  title: z.string(),
  html_url: z.string(),
  head: z.object({
    ref: z.string(),
    sha: z.string(),
    repo: z.object({ id: z.number(), full_name: z.string() }).nullable(),
  }),
  base: z.object({ ref: z.string(), repo: z.object({ id: z.number(), full_name: z.string() }) }),
});
const Common = z.object({
  repository: Repository,
  installation: Installation,
  sender: Account,
});
// The parts of each trigger event that airlock reads. Built once: zod schemas are costly to build
// and this runs for every delivery, while GitHub waits for the answer.
const LabelEvent = z.object({ issue: Issue, label: z.object({ name: z.string() }) });
const IssueCommentEvent = z.object({
  issue: Issue,
  comment: z.object({ id: z.number(), body: z.string().nullable(), html_url: z.string() }),
});
const ReviewCommentEvent = z.object({
  pull_request: PullRequest,
  comment: z.object({
    id: z.number(),
    body: z.string(),
    html_url: z.string(),
    path: z.string(),
    line: z.number().nullable().optional(),
    original_line: z.number().nullable().optional(),
    diff_hunk: z.string(),
  }),
});
const ReviewEvent = z.object({
  pull_request: PullRequest,
  review: z.object({ id: z.number(), body: z.string().nullable(), state: z.string(), html_url: z.string() }),
});
/** A check suite, check run or workflow run. */
const PushEvent = z.object({
  ref: z.string(),
  after: z.string(),
  forced: z.boolean().optional(),
  deleted: z.boolean().optional(),
  compare: z.string().nullable().optional(),
  commits: z.array(
    z.object({
      added: z.array(z.string()).default([]),
      removed: z.array(z.string()).default([]),
      modified: z.array(z.string()).default([]),
    }),
  ),
});
const CiRun = z.object({
  id: z.number(),
  head_sha: z.string(),
  head_branch: z.string().nullable().optional(),
  conclusion: z.string().nullable(),
  name: z.string().nullable().optional(),
  app: z.object({ slug: z.string().optional() }).nullable().optional(),
  check_suite: z.object({ head_branch: z.string().nullable().optional() }).optional(),
  head_repository: z.object({ full_name: z.string() }).nullable().optional(),
});

/** Who and where, common to every intent. */
export const IntentOrigin = z.object({
  deliveryId: z.string(),
  event: z.string(),
  action: z.string().nullable(),
  installationId: z.number().nullable(),
  repo: z.object({ fullName: z.string(), id: z.number(), defaultBranch: z.string().nullable() }),
  sender: z.object({ login: z.string(), id: z.number(), type: z.string() }),
  /** The app itself acted (our own comments and labels are never triggers). */
  fromSelf: z.boolean(),
});
export type IntentOrigin = z.infer<typeof IntentOrigin>;

const CommandFields = z.object({
  command: z.enum(['run', 'cancel', 'retry', 'approve', 'reject', 'rebuild']),
  instruction: z.string(),
  issueNumber: z.number(),
  isPullRequest: z.boolean(),
  url: z.string(),
  title: z.string(),
  commentId: z.number().nullable(),
  source: z.enum(['issue_comment', 'review_comment', 'review']),
  reviewComment: z.object({ path: z.string(), line: z.number().nullable(), diffHunk: z.string() }).optional(),
  pr: z
    .object({ headRef: z.string(), headSha: z.string(), fork: z.boolean(), baseRef: z.string() })
    .optional(),
});

/** What a webhook asks airlock to do, before permissions and repository config are checked. */
export const Intent = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('label'),
    origin: IntentOrigin,
    added: z.boolean(),
    label: z.string(),
    issueNumber: z.number(),
    isPullRequest: z.boolean(),
    title: z.string(),
    url: z.string(),
  }),
  z.object({ type: z.literal('command'), origin: IntentOrigin }).extend(CommandFields.shape),
  z.object({
    type: z.literal('ci'),
    origin: IntentOrigin,
    source: z.enum(['check_suite', 'check_run', 'workflow_run']),
    headSha: z.string(),
    headBranch: z.string().nullable(),
    conclusion: z.string().nullable(),
    name: z.string(),
    id: z.number(),
  }),
  /** A push to the repository's default branch: the paths it changed, for environments. */
  z.object({
    type: z.literal('push'),
    origin: IntentOrigin,
    ref: z.string(),
    after: z.string(),
    paths: z.array(z.string()),
    /** False when the listed commits may not be all of it (a forced or very long push). */
    complete: z.boolean(),
    url: z.string().nullable(),
  }),
]);
export type Intent = z.infer<typeof Intent>;

/** GitHub lists at most this many commits in a push delivery; a longer push may have more changes. */
const PUSH_COMMITS_LISTED = 2048;

const CI_EVENTS = new Set(['check_suite', 'check_run', 'workflow_run']);

/** Why a webhook is not an intent. */
export type NotAnIntent = { ignored: string };

/**
 * Turns a verified webhook into an intent, or says why it is not one. Pure: no I/O; permission,
 * fork and configuration checks come later, in the intake worker.
 */
export function webhookIntent(
  delivery: { id: string; name: string; payload: unknown },
  app: { slug: string },
): Intent | NotAnIntent {
  const payload = delivery.payload as Record<string, unknown>;
  const action = typeof payload?.action === 'string' ? payload.action : null;
  const common = Common.safeParse(payload);
  if (!common.success) return { ignored: `${delivery.name} has no repository, installation or sender` };
  const { repository, installation, sender } = common.data;
  const performedBy = (payload as { comment?: { performed_via_github_app?: { slug?: string } | null } })
    .comment?.performed_via_github_app?.slug;
  const origin: IntentOrigin = {
    deliveryId: delivery.id,
    event: delivery.name,
    action,
    installationId: installation?.id ?? null,
    repo: {
      fullName: repository.full_name,
      id: repository.id,
      defaultBranch: repository.default_branch ?? null,
    },
    sender: { login: sender.login, id: sender.id, type: sender.type },
    fromSelf: sender.login === `${app.slug}[bot]` || performedBy === app.slug,
  };
  // CI events about airlock's own pushes are sent by airlock's bot: they are exactly what it follows.
  if (origin.fromSelf && !CI_EVENTS.has(delivery.name)) return { ignored: 'sent by airlock itself' };

  switch (delivery.name) {
    case 'issues': {
      if (action !== 'labeled' && action !== 'unlabeled') return { ignored: `issues.${action}` };
      const parsed = LabelEvent.safeParse(payload);
      if (!parsed.success) return { ignored: `issues.${action} without an issue or label` };
      const { issue, label } = parsed.data;
      return {
        type: 'label',
        origin,
        added: action === 'labeled',
        label: label.name,
        issueNumber: issue.number,
        isPullRequest: Boolean(issue.pull_request),
        title: issue.title,
        url: issue.html_url,
      };
    }
    case 'issue_comment': {
      if (action !== 'created') return { ignored: `issue_comment.${action}` };
      const parsed = IssueCommentEvent.safeParse(payload);
      if (!parsed.success) return { ignored: 'issue_comment without an issue or comment' };
      const { issue, comment } = parsed.data;
      const command = parseCommand(comment.body ?? '', app.slug);
      if (!command) return { ignored: 'comment does not address airlock' };
      return {
        type: 'command',
        origin,
        ...command,
        issueNumber: issue.number,
        isPullRequest: Boolean(issue.pull_request),
        url: comment.html_url,
        title: issue.title,
        commentId: comment.id,
        source: 'issue_comment',
      };
    }
    case 'pull_request_review_comment': {
      if (action !== 'created') return { ignored: `pull_request_review_comment.${action}` };
      const parsed = ReviewCommentEvent.safeParse(payload);
      if (!parsed.success) return { ignored: 'review comment without a pull request or comment' };
      const { pull_request: pr, comment } = parsed.data;
      const command = parseCommand(comment.body, app.slug);
      if (!command) return { ignored: 'review comment does not address airlock' };
      return {
        type: 'command',
        origin,
        ...command,
        issueNumber: pr.number,
        isPullRequest: true,
        url: comment.html_url,
        title: pr.title,
        commentId: comment.id,
        source: 'review_comment',
        reviewComment: {
          path: comment.path,
          line: comment.line ?? comment.original_line ?? null,
          diffHunk: comment.diff_hunk,
        },
        pr: prFields(pr),
      };
    }
    case 'pull_request_review': {
      if (action !== 'submitted') return { ignored: `pull_request_review.${action}` };
      const parsed = ReviewEvent.safeParse(payload);
      if (!parsed.success) return { ignored: 'review without a pull request' };
      const { pull_request: pr, review } = parsed.data;
      if (review.state.toLowerCase() !== 'changes_requested') return { ignored: `review is ${review.state}` };
      const command = parseCommand(review.body ?? '', app.slug);
      if (!command) return { ignored: 'review does not address airlock' };
      return {
        type: 'command',
        origin,
        ...command,
        issueNumber: pr.number,
        isPullRequest: true,
        url: review.html_url,
        title: pr.title,
        commentId: null,
        source: 'review',
        pr: prFields(pr),
      };
    }
    case 'check_suite':
    case 'check_run':
    case 'workflow_run': {
      if (action !== 'completed') return { ignored: `${delivery.name}.${action}` };
      const key = delivery.name;
      const parsed = CiRun.safeParse((payload as Record<string, unknown>)[key]);
      if (!parsed.success) return { ignored: `${key} without its object` };
      const run = parsed.data;
      if (run.app?.slug === app.slug) return { ignored: 'our own check' };
      // A fork may name a branch like airlock's; only runs of this repository's own branches count.
      if (run.head_repository && run.head_repository.full_name !== repository.full_name)
        return { ignored: 'a run from a fork' };
      const headBranch = run.head_branch ?? run.check_suite?.head_branch ?? null;
      if (headBranch !== null && !headBranch.startsWith('airlock/'))
        return { ignored: 'not an airlock branch' };
      return {
        type: 'ci',
        origin,
        source: key,
        headSha: run.head_sha,
        headBranch,
        conclusion: run.conclusion,
        name: run.name ?? key,
        id: run.id,
      };
    }
    case 'push': {
      const parsed = PushEvent.safeParse(payload);
      if (!parsed.success) return { ignored: 'push without its ref or commits' };
      const push = parsed.data;
      const defaultBranch = repository.default_branch;
      if (!defaultBranch || push.ref !== `refs/heads/${defaultBranch}`)
        return { ignored: 'not a push to the default branch' };
      if (push.deleted) return { ignored: 'the default branch was deleted' };
      const paths = new Set(push.commits.flatMap((c) => [...c.added, ...c.removed, ...c.modified]));
      return {
        type: 'push',
        origin,
        ref: push.ref,
        after: push.after,
        paths: [...paths],
        complete: !push.forced && push.commits.length < PUSH_COMMITS_LISTED,
        url: push.compare ?? null,
      };
    }
    default:
      return { ignored: `event ${delivery.name} is not a trigger` };
  }
}

function prFields(pr: z.infer<typeof PullRequest>) {
  return {
    headRef: pr.head.ref,
    headSha: pr.head.sha,
    // A fork PR's head is in another repository than its base (a deleted head repository too).
    fork: pr.head.repo === null || pr.head.repo.id !== pr.base.repo.id,
    baseRef: pr.base.ref,
  };
}

/**
 * Finds an airlock command in a comment: a line starting with `/airlock`, or a mention of
 * `@<slug>` (or `@<slug>[bot]`). Quoted lines and fenced code are skipped so quoting an old command
 * does not run it again.
 */
export function parseCommand(
  body: string,
  slug: string,
):
  | { command: 'run' | 'cancel' | 'retry' | 'approve' | 'reject' | 'rebuild'; instruction: string }
  | undefined {
  const lines = withoutQuotesAndCode(body);
  const slash = lines.findIndex((l) => /^\s*\/airlock(\s|$)/i.test(l));
  const mention = new RegExp(`(^|[^\\w/-])@${escapeRegExp(slug)}(\\[bot\\])?(?![\\w-])`, 'i');
  let rest: string;
  if (slash >= 0) {
    rest = [lines[slash]!.replace(/^\s*\/airlock/i, ''), ...lines.slice(slash + 1)].join('\n');
  } else if (lines.some((l) => mention.test(l))) {
    rest = lines.map((l) => l.replace(mention, '$1')).join('\n');
  } else {
    return undefined;
  }
  const instruction = rest.trim();
  const word = instruction.split(/\s+/)[0]?.toLowerCase();
  if (word === 'cancel' && instruction.split(/\s+/).length === 1)
    return { command: 'cancel', instruction: '' };
  if (word === 'retry' && instruction.split(/\s+/).length === 1) return { command: 'retry', instruction: '' };
  if (word === 'rebuild' && instruction.split(/\s+/).length === 1)
    return { command: 'rebuild', instruction: '' };
  // `approve` and `reject` stand alone, or name the waiting task: `/airlock approve k3v9x2mq7p`.
  const words = instruction.split(/\s+/);
  if (
    (word === 'approve' || word === 'reject') &&
    words.length <= 2 &&
    (words.length === 1 || TASK_ID.test(words[1]!))
  )
    return { command: word, instruction: words[1] ?? '' };
  return { command: 'run', instruction };
}

const TASK_ID = /^[a-z0-9]{10}$/;

function withoutQuotesAndCode(body: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of body.replace(/\r\n/g, '\n').split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced || /^\s*>/.test(line)) continue;
    out.push(line);
  }
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
