import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testVmImage } from '../helpers/vm-image.ts';

// `airlock run` as a person would use it: the real CLI against a local repository, a real microVM
// (TCG here), the credential proxy between them, and no GitHub anywhere.
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
let dir: string;
let repo: string;
let env: Record<string, string>;

const AGENT_SCRIPT = `#!/bin/bash
set -e
grep -q "Shout the greeting" "$AIRLOCK_PROMPT_FILE"
echo "HELLO" > greeting.txt
# Left running, as an agent starting a dev server or a watcher would: the task must not wait for them.
nohup sleep 600 >/dev/null 2>&1 &
setsid sleep 600 &
git -c user.name=x -c user.email=x@example.invalid commit -q --allow-empty -m "sneak onto main"
git push origin HEAD:refs/heads/main 2>&1 | grep -o "airlock: pushes are limited to [^ ]*" || true
git reset -q --soft HEAD~1
echo "done: shouted"
`;

const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).trim();

beforeAll(async () => {
  const image = testVmImage();
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-local-'));
  repo = path.join(dir, 'my-project');
  await mkdir(path.join(repo, 'scripts'), { recursive: true });
  await mkdir(path.join(repo, '.github'), { recursive: true });
  await writeFile(path.join(repo, 'greeting.txt'), 'hello\n');
  await writeFile(path.join(repo, 'scripts/agent.sh'), AGENT_SCRIPT);
  await writeFile(
    path.join(repo, '.github/airlock.yml'),
    'agent: script\nscript: scripts/agent.sh\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 512\n',
  );
  execFileSync('git', ['init', '-q', '-b', 'trunk', repo]);
  git('config', 'user.name', 'Dana Developer');
  git('config', 'user.email', 'dana@example.com');
  git('add', '-A');
  git('commit', '-q', '-m', 'start');
  env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    AIRLOCK_DATA_DIR: path.join(dir, 'data'),
    AIRLOCK_CACHE_DIR: path.dirname(path.dirname(image.dir)),
    AIRLOCK_ACCEL: 'tcg',
  };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const airlock = (args: string[]) =>
  execa(process.execPath, [CLI, ...args], { env, extendEnv: false, reject: false, timeout: 600_000 });

describe('airlock run', () => {
  it('runs a task in a microVM and leaves the result on a branch of the local repository', async () => {
    const trunk = git('rev-parse', 'trunk');
    // What an earlier run killed with kill -9 left in the data directory: its owner is gone.
    const leftover = path.join(env.AIRLOCK_DATA_DIR!, 'vms', 'vm-leftover-0a0b0c');
    await mkdir(leftover, { recursive: true });
    await writeFile(
      path.join(leftover, 'vm.json'),
      JSON.stringify({
        vmId: 'vm-leftover-0a0b0c',
        taskId: 'leftover',
        startedAt: new Date().toISOString(),
        owner: { pid: 1, startTicks: -1 },
      }),
    );
    const result = await airlock(['run', repo, '--prompt', 'Shout the greeting.']);
    expect(result.stderr).toContain('airlock: reaped the VMs of 1 earlier run(s): leftover');
    expect(existsSync(leftover)).toBe(false);
    expect(result.stderr).toMatch(/airlock: task \S+ on .*my-project \(script agent, base trunk\)/);
    expect(result.stderr).toMatch(/airlock: running +\d+\.\d s/);
    expect(result.stderr).toMatch(/airlock: succeeded +\d+\.\d s/);
    expect(result.exitCode, result.stderr).toBe(0);

    const taskId = /^task (\S+): succeeded$/m.exec(result.stdout)?.[1];
    expect(taskId, `${result.stdout}\n---\n${result.stderr}`).toBeDefined();
    const branch = /^branch: (airlock\/\S+)/m.exec(result.stdout)?.[1];
    expect(branch).toBeDefined();
    expect(git('show', `${branch}:greeting.txt`)).toBe('HELLO');
    expect(git('log', '-1', '--format=%an <%ae>', branch!)).toBe(
      'airlock[bot] <airlock[bot]@users.noreply.github.com>',
    );
    expect(git('log', '-1', '--format=%B', branch!)).toContain(
      'Co-authored-by: Dana Developer <dana@example.com>',
    );
    expect(git('rev-parse', `${branch}~1`)).toBe(trunk);
    // The agent's push to another branch was refused: only the task branch is new.
    expect(git('rev-parse', 'trunk')).toBe(trunk);
    expect(git('branch', '--list', '--format=%(refname:short)').split('\n').sort()).toEqual(
      [branch!, 'trunk'].sort(),
    );

    const recordFile = /^audit record: (\S+)$/m.exec(result.stdout)?.[1];
    expect(recordFile && existsSync(recordFile)).toBe(true);
    const events = readFileSync(recordFile!, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; data: Record<string, unknown> });
    const types = events.map((e) => e.type);
    for (const type of ['task.created', 'vm.created', 'vm.exec', 'task.prompt', 'git.diff', 'task.outcome'])
      expect(types, type).toContain(type);
    // The agent's leftovers were killed and recorded, not waited for (invariant 11).
    const leftovers = events.find((e) => e.type === 'agent.leftovers_killed');
    expect(leftovers, 'an agent.leftovers_killed event').toBeDefined();
    expect((leftovers!.data.processes as Array<{ argv: string[] }>).map((p) => p.argv)).toEqual([
      ['sleep', '600'],
      ['sleep', '600'],
    ]);
    expect(types.indexOf('agent.leftovers_killed')).toBeLessThan(types.indexOf('git.diff'));
    const refused = events.filter((e) => e.type === 'git.ref_update' && e.data.decision === 'refused');
    expect(refused.map((e) => e.data.ref)).toEqual(['refs/heads/main']);

    const verify = await airlock(['audit', 'verify', taskId!]);
    expect(verify.stdout, verify.stderr).toMatch(/^ok: 1 task/m);
    expect(verify.exitCode).toBe(0);
  }, 600_000);

  it('says clearly what is wrong with a path that is no repository, and with a missing prompt', async () => {
    const notRepo = await airlock(['run', dir, '--prompt', 'anything']);
    expect(notRepo.exitCode).toBe(1);
    expect(notRepo.stderr).toContain(`${dir} is not a git repository`);
    const noPrompt = await airlock(['run', repo]);
    expect(noPrompt.exitCode).toBe(2);
    expect(noPrompt.stderr).toContain('usage: airlock run <repo-path> --prompt');
    const badAgent = await airlock(['run', repo, '--prompt', 'x', '--agent', 'gpt']);
    expect(badAgent.exitCode).toBe(2);
    expect(badAgent.stderr).toContain('--agent must be one of claude, codex, opencode, script');
  });
});
