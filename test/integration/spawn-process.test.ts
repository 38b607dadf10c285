import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnProcess } from '../../src/process/spawn-process.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** Whether a process runs (a zombie waiting for its parent to reap it does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Runs test/helpers/spawn-owner-child.ts, kills it with SIGKILL, and returns its child's pid. */
async function killOwner(mode: 'die-with-owner' | 'plain'): Promise<number> {
  const owner = spawn(
    process.execPath,
    [path.join(import.meta.dirname, '../helpers/spawn-owner-child.ts'), mode],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const line = await new Promise<string>((resolve, reject) => {
    owner.stdout.once('data', (d) => resolve(String(d)));
    owner.once('exit', (code) => reject(new Error(`the owner exited (${code}) before it printed`)));
  });
  const { pid } = JSON.parse(line) as { pid: number };
  expect(alive(pid)).toBe(true);
  owner.kill('SIGKILL');
  await new Promise((r) => owner.once('exit', r));
  return pid;
}

describe('spawnProcess', () => {
  it('kills a dieWithOwner child when its owner is killed with SIGKILL', async () => {
    const pid = await killOwner('die-with-owner');
    await waitFor(() => !alive(pid), 10_000, `child ${pid} to die with its owner`);
  });

  it('(the control) leaves a plain detached child running after its owner is killed', async () => {
    const pid = await killOwner('plain');
    try {
      expect(alive(pid)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('reports how the child ended, with the end of its stderr', async () => {
    const child = await spawnProcess('sh', ['-c', 'echo about to fail >&2; exit 3'], {});
    expect(await child.exited).toMatchObject({ exitCode: 3, stderr: 'about to fail\n', timedOut: false });
  });

  it('kills the child at its timeout and when its signal aborts', async () => {
    const timed = await spawnProcess('sleep', ['600'], { timeoutMs: 50 });
    expect(await timed.exited).toMatchObject({ signal: 'SIGKILL', timedOut: true });
    const controller = new AbortController();
    const aborted = await spawnProcess('sleep', ['600'], { signal: controller.signal });
    controller.abort();
    expect(await aborted.exited).toMatchObject({ signal: 'SIGKILL', cancelled: true });
  });

  it('passes only the environment it is given', async () => {
    const child = await spawnProcess('sh', ['-c', 'env >&2'], { env: { ONLY_THIS: '1' } });
    const names = (await child.exited).stderr
      .trim()
      .split('\n')
      .map((line) => line.split('=')[0])
      // The shell sets these itself.
      .filter((name) => name !== 'PWD' && name !== 'SHLVL')
      .sort();
    expect(names).toEqual(['LANG', 'ONLY_THIS', 'PATH']);
  });

  it('says so when the program cannot start', async () => {
    await expect(spawnProcess('/nonexistent/vmm', [], {})).rejects.toThrow(/could not start/);
  });
});
