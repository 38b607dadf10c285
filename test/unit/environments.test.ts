import { describe, expect, it } from 'vitest';
import { parseRepoConfig } from '../../src/config/repo-config.ts';
import { buildFailureComment, buildFailureJob } from '../../src/environments/build-report.ts';
import { environmentsToCollect } from '../../src/environments/environment-gc.ts';
import {
  type EnvironmentConfig,
  environmentKey,
  environmentSpecHash,
  hasEnvironment,
  keyFilePathspecs,
  parseLsFiles,
  touchesEnvironment,
} from '../../src/environments/environment-key.ts';
import { EnvironmentBuild, type EnvironmentRecord } from '../../src/environments/environment-store.ts';
import { parseCommand, webhookIntent } from '../../src/github/webhook-intent.ts';
import { workspaceSteps } from '../../src/tasks/workspace-steps.ts';
import { taskFixture } from '../helpers/task-fixture.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

function envConfig(yaml: string): EnvironmentConfig {
  const config = parseRepoConfig(yaml);
  if (!hasEnvironment(config)) throw new Error('no environment in the fixture');
  return config;
}

describe('environment: in .github/airlock.yml', () => {
  it('is unset by default, and every field has a default once the section is there', () => {
    expect(parseRepoConfig('agent: codex\n').environment).toBeUndefined();
    expect(parseRepoConfig('environment: {}\n').environment).toEqual({
      packages: [],
      setup: [],
      max_age: '7d',
    });
  });

  it('names each bad field', () => {
    expect(() => parseRepoConfig('environment:\n  packages: ["python3; rm -rf /"]\n')).toThrow(
      /`environment.packages.0`: must be a Debian package name/,
    );
    expect(() => parseRepoConfig('environment:\n  max_age: 3 weeks\n')).toThrow(/`environment.max_age`/);
    expect(() => parseRepoConfig('environment:\n  key_files: ["../outside"]\n')).toThrow(
      /`environment.key_files.0`: must be a path or glob inside the repository/,
    );
    expect(() => parseRepoConfig('environment:\n  setpu: []\n')).toThrow(/setpu/);
  });

  it('accepts pinned packages', () => {
    const config = envConfig('environment:\n  packages: [python3-pytest, "libssl-dev=3.0.15-1~deb12u1"]\n');
    expect(config.environment.packages).toEqual(['python3-pytest', 'libssl-dev=3.0.15-1~deb12u1']);
  });
});

describe('environment keys', () => {
  const config = envConfig('environment:\n  setup: [npm ci]\n');

  it('is keyed by the lock files present by default, at any depth', () => {
    expect(touchesEnvironment(config, ['src/index.ts', 'README.md'])).toBe(false);
    expect(touchesEnvironment(config, ['package-lock.json'])).toBe(true);
    expect(touchesEnvironment(config, ['web/package-lock.json'])).toBe(true);
    expect(touchesEnvironment(config, ['requirements-dev.txt'])).toBe(true);
    expect(touchesEnvironment(config, ['go.sum'])).toBe(true);
    // The config holds the packages and setup: changing it changes the environment.
    expect(touchesEnvironment(config, ['.github/airlock.yml'])).toBe(true);
    expect(keyFilePathspecs(config)).toContain(':(glob)**/package-lock.json');
  });

  it('uses key_files instead of the defaults when given', () => {
    const own = envConfig('environment:\n  key_files: [package.json, "tools/**"]\n');
    expect(touchesEnvironment(own, ['package.json'])).toBe(true);
    expect(touchesEnvironment(own, ['tools/gen/x.sh'])).toBe(true);
    expect(touchesEnvironment(own, ['package-lock.json'])).toBe(false);
  });

  it('changes with a key file, the config or the image, and not with the order files are listed', () => {
    const spec = environmentSpecHash(config, 'image-1');
    const a = { path: 'package-lock.json', blob: 'a'.repeat(40) };
    const b = { path: 'web/package-lock.json', blob: 'b'.repeat(40) };
    expect(environmentKey(spec, [a, b])).toBe(environmentKey(spec, [b, a]));
    expect(environmentKey(spec, [a, { ...b, blob: 'c'.repeat(40) }])).not.toBe(environmentKey(spec, [a, b]));
    expect(environmentSpecHash(config, 'image-2')).not.toBe(spec);
    expect(environmentSpecHash(envConfig('environment:\n  setup: [npm install]\n'), 'image-1')).not.toBe(
      spec,
    );
    expect(
      environmentSpecHash(
        envConfig('environment:\n  setup: [npm ci]\nlimits: {memory_mib: 4096}\n'),
        'image-1',
      ),
    ).not.toBe(spec);
  });

  it('reads git ls-files -s, and refuses what it does not understand', () => {
    const blob = '0123456789abcdef0123456789abcdef01234567';
    expect(parseLsFiles(`100644 ${blob} 0\tpackage-lock.json\n100644 ${blob} 0\tweb/a b.lock\n`)).toEqual([
      { path: 'package-lock.json', blob },
      { path: 'web/a b.lock', blob },
    ]);
    expect(() => parseLsFiles('fatal: not a git repository\n')).toThrow(/unexpected git ls-files line/);
  });
});

describe('garbage collection of environments', () => {
  const env = (
    id: string,
    repo: string,
    createdAt: string,
    lastUsedAt: string,
    gib: number,
  ): EnvironmentRecord => ({
    id,
    repoFullName: repo,
    buildId: `build-${id}`,
    specHash: 's',
    envKey: 'k',
    commitSha: 'c',
    dir: `/data/environments/${id}`,
    sizeBytes: gib * 2 ** 30,
    state: 'ready',
    createdAt,
    lastUsedAt,
    collectedAt: null,
    collectedWhy: null,
    workspaceRefs: null,
    host: null,
  });
  const now = new Date('2026-06-30T00:00:00Z');
  const limits = { now, idleMs: 30 * 86_400_000, budgetBytes: 10 * 2 ** 30, inUse: new Set<string>() };

  it('collects superseded environments, idle ones, then the least recently used over the budget', () => {
    const ready = [
      env('old', 'acme/a', '2026-06-01T00:00:00Z', '2026-06-20T00:00:00Z', 2),
      env('a', 'acme/a', '2026-06-10T00:00:00Z', '2026-06-29T00:00:00Z', 4),
      env('idle', 'acme/b', '2026-04-01T00:00:00Z', '2026-05-01T00:00:00Z', 1),
      env('c', 'acme/c', '2026-06-01T00:00:00Z', '2026-06-15T00:00:00Z', 4),
      env('d', 'acme/d', '2026-06-01T00:00:00Z', '2026-06-28T00:00:00Z', 4),
    ];
    const chosen = environmentsToCollect(ready, limits).map((c) => [c.env.id, c.why]);
    expect(chosen).toEqual([
      ['old', 'superseded by a'],
      ['idle', 'unused since 2026-05-01T00:00:00Z'],
      ['c', 'over the disk budget of 10 GiB (least recently used)'],
    ]);
  });

  it('never collects an environment a task holds', () => {
    const ready = [
      env('old', 'acme/a', '2026-06-01T00:00:00Z', '2026-06-01T00:00:00Z', 20),
      env('a', 'acme/a', '2026-06-10T00:00:00Z', '2026-06-29T00:00:00Z', 20),
    ];
    const chosen = environmentsToCollect(ready, { ...limits, inUse: new Set(['old', 'a']) });
    expect(chosen).toEqual([]);
  });
});

describe('workspace preparation', () => {
  const remote = 'http://10.0.2.100/git/acme/widgets.git';

  it('clones when cold, as before environments', () => {
    const task = taskFixture({ branch: 'airlock/issue-7', start: { from: 'ref', ref: 'main' } });
    expect(workspaceSteps(task, remote, '/work/repo', false).map((s) => s.argv.join(' '))).toEqual([
      `git clone --quiet --branch main ${remote} /work/repo`,
      'git checkout --quiet -B airlock/issue-7',
    ]);
  });

  it('fetches the delta and checks the start point out over the restored workspace', () => {
    const fromRef = taskFixture({ branch: 'airlock/issue-7', start: { from: 'ref', ref: 'main' } });
    expect(workspaceSteps(fromRef, remote, '/work/repo', true).map((s) => s.argv.join(' '))).toEqual([
      'git fetch --quiet --prune origin',
      'git checkout --quiet --force -B airlock/issue-7 refs/remotes/origin/main',
    ]);
    const own = taskFixture({ branch: 'airlock/issue-7', start: { from: 'own_branch' } });
    expect(workspaceSteps(own, remote, '/work/repo', true).at(-1)?.argv.join(' ')).toBe(
      'git checkout --quiet --force -B airlock/issue-7 refs/remotes/origin/airlock/issue-7',
    );
    const fork = taskFixture({ branch: 'airlock/pr-3', start: { from: 'pull_head', pull: 3 } });
    expect(workspaceSteps(fork, remote, '/work/repo', true).map((s) => s.argv.join(' '))).toEqual([
      'git fetch --quiet --prune origin',
      'git fetch --quiet origin refs/pull/3/head',
      'git checkout --quiet --force -B airlock/pr-3 FETCH_HEAD',
    ]);
  });
});

describe('environment triggers in webhooks', () => {
  const world = { repo: { id: 1, fullName: 'acme/widgets', defaultBranch: 'main' }, installationId: 9 };

  it('turns a push to the default branch into a push intent with the paths it changed', () => {
    const payload = examplePayload('push', null, { ...world, sender: { login: 'alice', id: 101 } });
    payload.ref = 'refs/heads/main';
    payload.forced = false;
    payload.deleted = false;
    payload.commits = [
      { ...payload.commits?.[0], added: ['a.txt'], removed: [], modified: ['package-lock.json'] },
      { ...payload.commits?.[0], added: [], removed: ['old.txt'], modified: ['a.txt'] },
    ];
    const intent = webhookIntent({ id: 'd1', name: 'push', payload }, { slug: 'airlock' });
    expect(intent).toMatchObject({ type: 'push', complete: true });
    expect('paths' in intent && [...intent.paths].sort()).toEqual(['a.txt', 'old.txt', 'package-lock.json']);
    expect(
      webhookIntent({ id: 'd2', name: 'push', payload: { ...payload, forced: true } }, { slug: 'airlock' }),
    ).toMatchObject({
      complete: false,
    });
    expect(
      webhookIntent(
        { id: 'd3', name: 'push', payload: { ...payload, ref: 'refs/heads/feature' } },
        { slug: 'airlock' },
      ),
    ).toEqual({
      ignored: 'not a push to the default branch',
    });
  });

  it('reads /airlock rebuild as a command of its own', () => {
    expect(parseCommand('/airlock rebuild', 'airlock')).toEqual({ command: 'rebuild', instruction: '' });
    expect(parseCommand('/airlock rebuild the parser', 'airlock')?.command).toBe('run');
  });
});

describe('a failed build on GitHub', () => {
  it('states the reason, quotes the end of the log as untrusted code, and links the build', () => {
    const build = EnvironmentBuild.parse({
      id: 'build-abc',
      repoFullName: 'acme/widgets',
      repoId: 1,
      installationId: 9,
      state: 'failed',
      reason: 'setup `npm ci` failed (exit 1): ```boom',
      trigger: { kind: 'command', by: 'alice', issueNumber: 7 },
      config: {},
      commitSha: null,
      envKey: null,
      environmentId: null,
      logTail: 'line 1\n```\n@everyone [click](https://evil.example)\nnpm ERR! code E404\n',
      createdAt: '2026-01-01T00:00:00Z',
      startedAt: null,
      finishedAt: null,
      host: 'worker-a',
    });
    const body = buildFailureComment(build, 'https://airlock.example.com/');
    // Reported on the issue that asked for it, by whichever process ran it.
    expect(buildFailureJob(build, 'https://airlock.example.com/')).toEqual({
      kind: 'comment',
      installationId: 9,
      repo: 'acme/widgets',
      issueNumber: 7,
      body,
    });
    expect(buildFailureJob({ ...build, state: 'succeeded' }, 'https://airlock.example.com/')).toBeUndefined();
    expect(
      buildFailureJob({ ...build, installationId: null }, 'https://airlock.example.com/'),
    ).toBeUndefined();
    expect(body).toContain('https://airlock.example.com/environments/builds/build-abc');
    expect(body).toContain('asked for by @alice');
    // The log's own fence cannot close the block it is quoted in.
    expect(body).toContain('````\nline 1\n```\n@everyone');
    expect(body).toContain('npm ERR! code E404\n````');
    expect(body).toContain('Fix `environment:`');
  });

  it('says a build stopped by airlock needs only a rebuild, and names the push that asked for it', () => {
    const build = EnvironmentBuild.parse({
      id: 'build-def',
      repoFullName: 'acme/widgets',
      repoId: 1,
      installationId: 9,
      state: 'failed',
      reason: 'interrupted: airlock is shutting down',
      trigger: { kind: 'push', by: 'alice', commitSha: 'a'.repeat(40) },
      config: {},
      commitSha: null,
      envKey: null,
      environmentId: null,
      logTail: '',
      createdAt: '2026-01-01T00:00:00Z',
      startedAt: null,
      finishedAt: null,
      host: null,
    });
    const body = buildFailureComment(build, 'https://airlock.example.com');
    // Reported on the pushed head.
    expect(buildFailureJob(build, 'https://airlock.example.com')).toMatchObject({
      kind: 'commit_comment',
      commitSha: 'a'.repeat(40),
      body,
    });
    expect(body).toContain('after a push by @alice');
    expect(body).toContain('Tasks keep running on the last good environment');
    expect(body).toContain('airlock was stopped during the build');
    expect(body).not.toContain('Fix `environment:`');
  });
});
