import { z } from 'zod';

/** One comment of an issue or pull request thread, with what identifies its version. */
export const ThreadComment = z
  .object({
    id: z.number(),
    author: z.string(),
    body: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .strict();
export type ThreadComment = z.infer<typeof ThreadComment>;

/** An issue or pull request's title, body and comments, as GitHub returned them. */
export const IssueThread = z
  .object({
    title: z.string(),
    body: z.string(),
    author: z.string(),
    /** When the body or title was last edited (GitHub's `updated_at` of the issue). */
    updatedAt: z.string(),
    comments: z.array(ThreadComment),
  })
  .strict();
export type IssueThread = z.infer<typeof IssueThread>;

/**
 * The thread a person with write access asked about, as it was when they asked: title, body and
 * the comments written up to the trigger. A task runs on this text, not on what the thread says
 * when the task starts (the author may edit it, anyone may comment, while the task waits).
 */
export function freezeThread(thread: IssueThread, triggeredAt: string): IssueThread {
  return { ...thread, comments: thread.comments.filter((c) => c.createdAt <= triggeredAt) };
}

/** What the prompt is built from, and what changed in the thread since the trigger. */
export interface PromptThread {
  thread: IssueThread;
  /** The title or body was edited after the trigger: the agent gets the frozen text. */
  editedAfterTrigger: boolean;
  /** Ids of comments written after the trigger by people with write access, now included. */
  laterComments: number[];
  /** Comments written after the trigger, or edited since, by anyone else: left out. */
  leftOut: number[];
}

/**
 * The thread a task's prompt is built from: the frozen thread, plus comments written after the
 * trigger by people with write access (a maintainer adding detail while the task waits). Edits
 * made after the trigger never reach the prompt; the result says they happened, so the tracking
 * comment and the record can.
 */
export function promptThread(
  frozen: IssueThread,
  current: IssueThread | undefined,
  mayWrite: ReadonlySet<string>,
): PromptThread {
  if (!current) return { thread: frozen, editedAfterTrigger: false, laterComments: [], leftOut: [] };
  const known = new Map(frozen.comments.map((c) => [c.id, c]));
  const editedAfterTrigger =
    current.title !== frozen.title ||
    current.body !== frozen.body ||
    current.comments.some((c) => known.has(c.id) && known.get(c.id)?.body !== c.body);
  const later = current.comments.filter((c) => !known.has(c.id));
  const added = later.filter((c) => mayWrite.has(c.author));
  const leftOut = [
    ...later.filter((c) => !mayWrite.has(c.author)).map((c) => c.id),
    ...current.comments.filter((c) => known.has(c.id) && known.get(c.id)?.body !== c.body).map((c) => c.id),
  ];
  return {
    thread: { ...frozen, comments: [...frozen.comments, ...added] },
    editedAfterTrigger,
    laterComments: added.map((c) => c.id),
    leftOut,
  };
}
