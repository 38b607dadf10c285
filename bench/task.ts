// npm run bench -- task [--tasks 10]
// Runs whole tasks with the `script` agent, from a signed webhook to a draft PR, on real microVMs
// (the chosen accelerator), one after another; takes each phase's duration from the task's audit
// record; and runs the same script directly on the host in a fresh clone, in the same run, for
// `overhead_ratio`. Writes bench/results/task.json.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startE2eWorld } from '../test/helpers/e2e-world.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({ options: { tasks: { type: 'string', default: '10' } } });
const count = Number(values.tasks);

// The agent's own work: edit a file, run a few commands (the same on the host and in the VM).
const AGENT_SCRIPT = `#!/bin/bash
set -e
grep -q "Task" "$AIRLOCK_PROMPT_FILE"
seq 1 2000 | awk '{ print "line " $1 }' > generated.txt
grep -c line generated.txt > count.txt
git log --oneline | wc -l > /dev/null
echo "done"
`;

const world = await startE2eWorld({
  appSlug: 'airlock-bench',
  files: {
    'README.md': '# widgets\n',
    'scripts/agent.sh': AGENT_SCRIPT,
    '.github/airlock.yml':
      'agent: script\nscript: scripts/agent.sh\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 1024\n',
  },
  // GitHub's spacing of writes stays, as in production: the draft PR's phase includes it.
  octokit: { retryBaseMs: 5 },
});
const phases = {
  queue_ms: [] as number[],
  boot_ms: [] as number[],
  workspace_ms: [] as number[],
  agent_ms: [] as number[],
  push_ms: [] as number[],
  teardown_ms: [] as number[],
  pr_ms: [] as number[],
};
const totals: number[] = [];
const direct: number[] = [];
let accel = '';
const scratch = await mkdtemp(path.join(tmpdir(), 'airlock-bench-task-'));
try {
  for (let i = 0; i < count; i++) {
    const task = await world.labelIssue(`Task ${i}`, `Task ${i}: generate the lines.`);
    if (task.state !== 'succeeded') throw new Error(`task ${task.id} ended ${task.state}: ${task.reason}`);
    const events = await world.audit.events(task.id);
    const at = (match: (e: (typeof events)[number]) => boolean, what: string) => {
      const event = events.find(match);
      if (!event) throw new Error(`task ${task.id} has no ${what} event`);
      return Date.parse(event.ts);
    };
    const state = (s: string) => at((e) => e.type === 'task.state' && e.data.state === s, `task.state ${s}`);
    const created = at((e) => e.type === 'task.created', 'task.created');
    const starting = state('starting');
    const vmCreated = at((e) => e.type === 'vm.created', 'vm.created');
    const prompt = at((e) => e.type === 'task.prompt', 'task.prompt');
    const agentExit = at((e) => e.type === 'agent.exit', 'agent.exit');
    const pushed = at(
      (e) => e.type === 'git.ref_update' && e.data.decision === 'forwarded',
      'forwarded ref update',
    );
    const cleaned = at((e) => e.type === 'cleanup.proxy', 'cleanup.proxy');
    const succeeded = state('succeeded');
    accel = String(events.find((e) => e.type === 'vm.created')?.data.accelerator ?? accel);
    phases.queue_ms.push(starting - created);
    phases.boot_ms.push(vmCreated - starting);
    phases.workspace_ms.push(prompt - vmCreated);
    phases.agent_ms.push(agentExit - prompt);
    phases.push_ms.push(pushed - agentExit);
    phases.teardown_ms.push(cleaned - pushed);
    phases.pr_ms.push(succeeded - cleaned);
    totals.push(succeeded - created);

    // The same script on the host, in a fresh clone of the same repository.
    const clone = path.join(scratch, `clone-${i}`);
    const promptFile = path.join(scratch, `prompt-${i}.md`);
    execFileSync('bash', ['-c', `printf 'Task %s' ${i} > ${promptFile}`]);
    const started = performance.now();
    execFileSync('git', ['clone', '--quiet', world.gh.state.repos.get('acme/widgets')!.dir, clone]);
    execFileSync('bash', ['scripts/agent.sh'], {
      cwd: clone,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', AIRLOCK_PROMPT_FILE: promptFile },
      stdio: 'ignore',
    });
    direct.push(performance.now() - started);
    process.stderr.write(`task ${i + 1}/${count}: ${Math.round(totals.at(-1)!)} ms\n`);
  }
} finally {
  await world.close();
  await rm(scratch, { recursive: true, force: true });
}

const medians = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(median(v), 0)]));
writeResults('task', {
  tasks: count,
  accel,
  ...medians,
  total_p50_ms: round(median(totals), 0),
  total_p95_ms: round(quantile(totals, 0.95), 0),
  direct_p50_ms: round(median(direct), 1),
  overhead_ratio: round(median(totals) / median(direct), 1),
  non_agent_p50_ms: round(median(totals.map((t, i) => t - phases.agent_ms[i]!)), 0),
  goal: 'everything except the agent under 1 s on hardware KVM',
  note: 'phases from audit timestamps: boot = starting→vm.created (token, proxy, VM); workspace = clone, checkout, setup, prompt; push = commit and push; teardown = audit barrier, VM destroy, token revoke; pr = draft PR and final state',
});
