import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { Task } from '../../src/tasks/task.ts';
import type { NewTask } from '../../src/tasks/task-store.ts';

/** What intake would pass TaskStore.create for a labelled issue of acme/widgets, with `overrides`. */
export function newTaskInput(overrides: Partial<NewTask> = {}): NewTask {
  return {
    installationId: 1,
    repoFullName: 'acme/widgets',
    repoId: 7,
    issueNumber: 1,
    prNumber: null,
    kind: 'issue',
    baseRef: 'main',
    actorLogin: 'alice',
    actorId: 1,
    triggerEvent: 'issues.labeled',
    triggerUrl: null,
    deliveryId: null,
    instruction: null,
    context: {},
    start: { from: 'ref', ref: 'main' },
    config: DEFAULT_REPO_CONFIG,
    ...overrides,
  };
}

/** A task as the store returns it, for unit tests of what renders or prompts from one. */
export function taskFixture(overrides: Partial<Task> = {}): Task {
  return Task.parse({
    id: 't1',
    installationId: 1,
    repoFullName: 'acme/widgets',
    repoId: 1,
    issueNumber: 7,
    prNumber: null,
    kind: 'issue',
    state: 'running',
    reason: null,
    branch: 'airlock/issue-7',
    baseRef: 'main',
    actorLogin: 'alice',
    actorId: 101,
    triggerEvent: 'issues.labeled',
    triggerUrl: null,
    deliveryId: 'd1',
    instruction: null,
    context: {},
    start: { from: 'ref', ref: 'main' },
    thread: null,
    config: {},
    parentTaskId: null,
    attempt: 1,
    trackingCommentId: null,
    checkRunId: null,
    headSha: null,
    result: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    ...overrides,
  });
}
