import { describe, expect, it } from 'vitest';
import { parseWorkspaceRefs, type WorkspaceRefs } from '../../src/environments/workspace-refs.ts';
import type { MirrorRef } from '../../src/git/git-mirrors.ts';
import { applyDeltaExec, deltaWithin, printfChunks } from '../../src/tasks/restored-workspace.ts';
import {
  deltaUnavailable,
  newTags,
  planWorkspaceDelta,
  tagFollowingRoots,
} from '../../src/tasks/workspace-delta.ts';
import { configListing } from '../../src/tasks/workspace-git.ts';
import { taskFixture } from '../helpers/task-fixture.ts';

const sha = (c: string) => c.repeat(40);
const REMOTE = 'http://10.0.2.100/git/acme/widgets.git';

// The clone at the build: main and two branches, one tag.
const workspace: WorkspaceRefs = {
  head: 'refs/heads/main',
  refs: {
    'refs/heads/main': sha('a'),
    'refs/remotes/origin/main': sha('a'),
    'refs/remotes/origin/feature': sha('b'),
    'refs/remotes/origin/gone': sha('c'),
    'refs/tags/v0': sha('d'),
  },
};
// Upstream now: main moved, feature unchanged, gone deleted, a new branch, two new tags.
const mirror = new Map<string, MirrorRef>([
  ['refs/heads/main', { sha: sha('1') }],
  ['refs/heads/feature', { sha: sha('b') }],
  ['refs/heads/airlock/issue-7', { sha: sha('2') }],
  ['refs/tags/v0', { sha: sha('d') }],
  ['refs/tags/v1', { sha: sha('3'), peeled: sha('1') }],
  ['refs/tags/elsewhere', { sha: sha('4') }],
]);
const present = new Set([sha('a'), sha('b'), sha('c'), sha('d')]);

function plan(task = taskFixture({ branch: 'airlock/issue-7', start: { from: 'ref', ref: 'main' } })) {
  return planWorkspaceDelta({
    task,
    workspace,
    envCommit: sha('a'),
    mirror,
    present,
    followed: new Set(['refs/tags/v1']),
    remote: REMOTE,
  });
}

describe('planning a restored workspace from the host mirror', () => {
  it('makes the ref updates `git fetch --prune origin` would, each checked against the clone', () => {
    const planned = plan();
    if (!('plan' in planned)) throw new Error(planned.fallback);
    expect(planned.plan.transaction).toEqual([
      `create refs/remotes/origin/airlock/issue-7 ${sha('2')}`,
      `update refs/remotes/origin/main ${sha('1')} ${sha('a')}`,
      `delete refs/remotes/origin/gone ${sha('c')}`,
      `create refs/tags/v1 ${sha('3')}`,
    ]);
    expect(planned.plan.counts).toEqual({ updated: 1, created: 1, pruned: 1, tags: 1 });
    // The pack: from the new values, without what the clone has.
    expect(planned.plan.wants.sort()).toEqual([sha('1'), sha('2'), sha('3')]);
    expect(planned.plan.haves.sort()).toEqual([sha('a'), sha('b'), sha('c'), sha('d')]);
    expect(planned.plan).toMatchObject({
      branch: 'airlock/issue-7',
      checkoutFrom: 'refs/remotes/origin/main',
      startSha: sha('1'),
    });
  });

  it('writes FETCH_HEAD as git does: the default branch for merging, then the rest', () => {
    const planned = plan();
    if (!('plan' in planned)) throw new Error(planned.fallback);
    const url = 'http://10.0.2.100/git/acme/widgets';
    expect(planned.plan.fetchHead).toBe(
      [
        `${sha('1')}\t\tbranch 'main' of ${url}`,
        `${sha('2')}\tnot-for-merge\tbranch 'airlock/issue-7' of ${url}`,
        `${sha('b')}\tnot-for-merge\tbranch 'feature' of ${url}`,
        `${sha('3')}\tnot-for-merge\ttag 'v1' of ${url}`,
        '',
      ].join('\n'),
    );
  });

  it("starts an own-branch task from its branch's remote-tracking ref", () => {
    const planned = plan(taskFixture({ branch: 'airlock/issue-7', start: { from: 'own_branch' } }));
    expect(planned).toMatchObject({
      plan: { checkoutFrom: 'refs/remotes/origin/airlock/issue-7', startSha: sha('2') },
    });
  });

  it('needs nothing when upstream has not moved', () => {
    const planned = planWorkspaceDelta({
      task: taskFixture({ start: { from: 'ref', ref: 'main' } }),
      workspace,
      envCommit: sha('a'),
      mirror: new Map([
        ['refs/heads/main', { sha: sha('a') }],
        ['refs/heads/feature', { sha: sha('b') }],
        ['refs/heads/gone', { sha: sha('c') }],
        ['refs/tags/v0', { sha: sha('d') }],
      ]),
      present,
      followed: new Set(),
      remote: REMOTE,
    });
    expect(planned).toMatchObject({ plan: { transaction: [], wants: [], startSha: sha('a') } });
  });

  it('leaves out of the pack only objects the mirror has', () => {
    const planned = planWorkspaceDelta({
      task: taskFixture({ start: { from: 'ref', ref: 'main' } }),
      workspace,
      envCommit: sha('a'),
      mirror,
      present: new Set([sha('a')]),
      followed: new Set(),
      remote: REMOTE,
    });
    expect(planned).toMatchObject({ plan: { haves: [sha('a')] } });
  });

  it('says why the guest fetches instead', () => {
    expect(deltaUnavailable(taskFixture({ start: { from: 'pull_head', pull: 3 } }), workspace)).toMatch(
      /pull request's head/,
    );
    expect(deltaUnavailable(taskFixture({ start: { from: 'ref', ref: 'main' } }), null)).toMatch(
      /built before its workspace's refs were recorded/,
    );
    expect(deltaUnavailable(taskFixture({ start: { from: 'ref', ref: 'main' } }), workspace)).toBeUndefined();
    expect(plan(taskFixture({ start: { from: 'ref', ref: 'release' } }))).toEqual({
      fallback: 'release is not a branch of the repository upstream',
    });
    expect(plan(taskFixture({ branch: 'airlock/issue-8', start: { from: 'own_branch' } }))).toEqual({
      fallback: 'airlock/issue-8 is not a branch of the repository upstream',
    });
    expect(
      planWorkspaceDelta({
        task: taskFixture({ start: { from: 'ref', ref: 'main' } }),
        workspace,
        envCommit: sha('a'),
        mirror,
        present: new Set([sha('b')]),
        followed: new Set(),
        remote: REMOTE,
      }),
    ).toEqual({ fallback: expect.stringMatching(/commit aaaaaaaaaaaa is not in the host's mirror/) });
  });

  it('follows new tags from the branches of both sides', () => {
    expect(newTags(workspace, mirror)).toEqual(['refs/tags/v1', 'refs/tags/elsewhere']);
    expect(tagFollowingRoots(workspace, mirror, present).sort()).toEqual(
      [sha('1'), sha('b'), sha('2'), sha('a'), sha('c')].sort(),
    );
    // Not from a commit the mirror lacks (git would refuse to walk from it).
    expect(tagFollowingRoots(workspace, mirror, new Set([sha('a')])).sort()).toEqual(
      [sha('1'), sha('b'), sha('2'), sha('a')].sort(),
    );
  });
});

describe('the workspace refs an environment records', () => {
  it('keeps every plain ref and where HEAD pointed, and leaves symbolic refs out', () => {
    const listing = [
      `${sha('a')} refs/heads/main `,
      `${sha('a')} refs/remotes/origin/HEAD refs/remotes/origin/main`,
      `${sha('a')} refs/remotes/origin/main `,
      `${sha('d')} refs/tags/v0 `,
      '',
    ].join('\n');
    expect(parseWorkspaceRefs('refs/heads/main\n', listing)).toEqual({
      head: 'refs/heads/main',
      refs: {
        'refs/heads/main': sha('a'),
        'refs/remotes/origin/main': sha('a'),
        'refs/tags/v0': sha('d'),
      },
    });
  });

  it('records nothing it cannot read', () => {
    expect(parseWorkspaceRefs('HEAD', `${sha('a')} refs/heads/main \n`)).toBeUndefined();
    expect(parseWorkspaceRefs('refs/heads/main', 'fatal: not a git repository\n')).toBeUndefined();
    expect(parseWorkspaceRefs('refs/heads/main', `${sha('a')} refs/heads/a b \n`)).toBeUndefined();
  });
});

describe('the one command that applies a plan in the guest', () => {
  it('passes the data as arguments and stdin, never in the script, and lists the config as the runner does', () => {
    const planned = plan();
    if (!('plan' in planned)) throw new Error(planned.fallback);
    const workspace = { repoDir: '/work/repo', uid: 1000 };
    const files = [{ path: '/work/repo/.git/FETCH_HEAD', content: Buffer.from('a\tb\n') }];
    const exec = applyDeltaExec(planned.plan, workspace, files);
    const listing = configListing(workspace);
    expect(exec.argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(exec.argv[2]).not.toContain('airlock/issue-7');
    expect(exec.argv.slice(3, 8)).toEqual([
      'airlock-workspace-delta',
      'airlock/issue-7',
      'refs/remotes/origin/main',
      '>/work/repo/.git/FETCH_HEAD',
      'a\\011b\\012',
    ]);
    const [first, second] = [exec.argv.indexOf('--'), exec.argv.lastIndexOf('--')];
    expect(first).toBe(8);
    expect(exec.argv.slice(first + 1, second)).toEqual(
      Object.entries(listing.env!).map(([k, v]) => `${k}=${v}`),
    );
    expect(exec.argv.slice(second + 1)).toEqual(listing.argv);
    expect(exec).toMatchObject({ cwd: '/work/repo', uid: 1000 });
    expect(exec.stdin).toBe(planned.plan.transaction.map((line) => `${line}\n`).join(''));
  });

  it('escapes a file for printf: letters and digits as they are, every other byte in octal, in chunks', () => {
    expect(printfChunks(Buffer.from([0, 0x25, 0x3e, 0x5c, 0x41, 0x7a, 0x39, 0xff]))).toEqual([
      '\\000\\045\\076\\134Az9\\377',
    ]);
    expect(printfChunks(Buffer.alloc(0))).toEqual(['']);
    const chunks = printfChunks(Buffer.alloc(100 * 1024, 0x41));
    expect(chunks.map((c) => c.length)).toEqual([96 * 1024, 4 * 1024]);
    // No chunk can be taken for a file name.
    expect(printfChunks(Buffer.from('>x')).every((c) => !c.startsWith('>'))).toBe(true);
  });
});

describe('waiting for the host', () => {
  it("lets the guest fetch when the host's delta is late, and takes it when it is ready", async () => {
    expect(await deltaWithin(new Promise(() => {}), 20)).toEqual({
      fallback:
        "the host's delta was not ready 0.02 s after the VM (a mirror being made, or a slow upstream)",
    });
    expect(await deltaWithin(Promise.resolve({ fallback: 'no mirrors' }), 60_000)).toEqual({
      fallback: 'no mirrors',
    });
  });
});
