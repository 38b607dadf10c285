import { z } from 'zod';
import { TaskState } from '../tasks/task.ts';
import type { TaskListFilter } from './task-query.ts';
import { DEFAULT_PER_PAGE } from './task-views.ts';

const blankToUndefined = (v: unknown) => (v === '' ? undefined : v);

/** The task list's query string; values that make no sense are dropped rather than failing the page. */
export const TaskListQuery = z.object({
  repo: z.preprocess(blankToUndefined, z.string().max(200).optional()).catch(undefined),
  state: z.preprocess(blankToUndefined, TaskState.optional()).catch(undefined),
  actor: z.preprocess(blankToUndefined, z.string().max(100).optional()).catch(undefined),
  page: z.coerce.number().int().min(1).max(1_000_000).catch(1).default(1),
  per_page: z.coerce.number().int().min(1).max(100).catch(DEFAULT_PER_PAGE).default(DEFAULT_PER_PAGE),
});
export type TaskListQuery = z.infer<typeof TaskListQuery>;

/** The filter part of a parsed list query. */
export function listFilter(q: TaskListQuery): TaskListFilter {
  return { repo: q.repo, state: q.state, actor: q.actor?.replace(/^@/, '') };
}

/** A sequence number from the query string (`after`), or 0. */
export const AfterSeq = z.coerce.number().int().min(0).catch(0).default(0);

/** Task ids are short and URL-safe; anything else is simply not found. */
export const TaskId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
