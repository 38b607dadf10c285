import { z } from 'zod';

const ObjectId = z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/);
const RefName = z.string().regex(/^refs\/[^\s\0]+$/);

/**
 * The refs of an environment's workspace right after its clone, before any of the repository's
 * code ran: what every task restored from it starts with. A task's workspace is brought up to date
 * from them (src/tasks/workspace-delta.ts); every object they reach is in the workspace.
 */
export const WorkspaceRefs = z
  .object({
    /** The branch HEAD named (the default branch the clone checked out). */
    head: z.string().regex(/^refs\/heads\/[^\s\0]+$/),
    /** Every ref that is not symbolic, by full name. */
    refs: z.record(RefName, ObjectId),
  })
  .strict();
export type WorkspaceRefs = z.infer<typeof WorkspaceRefs>;

/** The `for-each-ref` format {@link parseWorkspaceRefs} reads. */
export const FOR_EACH_REF_FORMAT = '%(objectname) %(refname) %(symref)';

/**
 * A clone's refs from `git rev-parse --symbolic-full-name HEAD` and `git for-each-ref` (in
 * {@link FOR_EACH_REF_FORMAT}); undefined when HEAD names no branch or a line does not parse.
 */
export function parseWorkspaceRefs(head: string, listing: string): WorkspaceRefs | undefined {
  const refs: Record<string, string> = {};
  for (const line of listing.split('\n')) {
    if (!line) continue;
    const [sha, name, symref, ...rest] = line.split(' ');
    if (rest.length || !name) return undefined;
    // A symbolic ref (refs/remotes/origin/HEAD) is not moved by a fetch: it is left out.
    if (symref) continue;
    refs[name] = sha ?? '';
  }
  const parsed = WorkspaceRefs.safeParse({ head: head.trim(), refs });
  return parsed.success ? parsed.data : undefined;
}
