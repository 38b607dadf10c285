import type { Task } from './task.ts';

/** One git command that prepares a task's workspace. */
export interface WorkspaceStep {
  what: string;
  argv: string[];
  /** Where it runs; the workspace when unset. */
  cwd?: string;
}

/**
 * The git commands that put a task's workspace at its start point. Cold (no environment): clone
 * into `dir`. Restored from an environment, where the workspace was cloned and set up at build
 * time: fetch what changed upstream since, then check the start point out over it (files setup
 * made that git does not track, such as node_modules, stay).
 */
export function workspaceSteps(task: Task, remote: string, dir: string, restored: boolean): WorkspaceStep[] {
  const { start } = task;
  const steps: WorkspaceStep[] = [];
  const checkout = (from: string): WorkspaceStep => ({
    what: 'git checkout',
    argv: ['git', 'checkout', '--quiet', ...(restored ? ['--force'] : []), '-B', task.branch, from],
  });
  if (restored) {
    steps.push({ what: 'git fetch', argv: ['git', 'fetch', '--quiet', '--prune', 'origin'] });
  } else {
    const clone = ['git', 'clone', '--quiet'];
    if (start.from === 'own_branch') clone.push('--branch', task.branch);
    if (start.from === 'ref') clone.push('--branch', start.ref);
    steps.push({ what: 'git clone', argv: [...clone, remote, dir], cwd: path(dir) });
  }
  if (start.from === 'pull_head') {
    const ref = `refs/pull/${start.pull}/head`;
    steps.push({ what: 'git fetch', argv: ['git', 'fetch', '--quiet', 'origin', ref] });
    steps.push(checkout('FETCH_HEAD'));
  } else if (restored) {
    // The full name: a pushed tag named `origin/<branch>` makes the short one ambiguous.
    steps.push(checkout(`refs/remotes/origin/${start.from === 'ref' ? start.ref : task.branch}`));
  } else if (start.from === 'ref') {
    steps.push({ what: 'git checkout', argv: ['git', 'checkout', '--quiet', '-B', task.branch] });
  }
  return steps;
}

function path(dir: string): string {
  return dir.slice(0, dir.lastIndexOf('/')) || '/';
}
