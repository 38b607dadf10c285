// The task-level half of `npm run bench -- start`: how long a task takes from leaving the queue
// (its `task.state starting`) to its agent running (the agent's first line of output, as the host
// recorded it), three ways in one run, each in an airlock of its own built as production builds it
// (test/helpers/e2e-world.ts): a cold boot with a clone (a repository without an environment, no
// base snapshot); a restore of the repository's environment, its workspace brought up to date with
// what changed since it was built; a take from the warm pool of that environment.
import type { MicroVmSandbox } from '../src/sandbox/microvm-sandbox.ts';
import type { VmSpec } from '../src/sandbox/sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../test/helpers/e2e-world.ts';
import { median, quantile, round } from './stats.ts';

/** Where a task's start went, in ms, from its audit record. */
export interface TaskStart {
  /** `task.state starting` to the agent's first output: what a task waits for. */
  total: number;
  /** Starting to `vm.created`: token, proxy, and the VM booted, restored or taken. */
  vm: number;
  /** `vm.created` to `agent.info`: clone or fetch and checkout, setup, prompt. */
  workspace: number;
  /** `agent.info` (the agent's exec sent) to its first output. */
  agent: number;
  /** How a restored workspace was brought up to date (`workspace.delta`'s path); none when cold. */
  delta?: string;
}

type Path = 'cold' | 'restore' | 'warm';

// The agent says it runs, and changes nothing: the task ends without a push.
const AGENT = '#!/bin/bash\necho "agent running"\n';
const config = (environment: boolean) =>
  [
    'agent: script',
    'script: scripts/agent.sh',
    'timeout_minutes: 30',
    'limits:',
    '  cpus: 1',
    '  memory_mib: 512',
    '  disk_mib: 1024',
    ...(environment ? ['environment:', '  setup: [bash scripts/setup.sh]'] : []),
    '',
  ].join('\n');
const FILES = {
  'README.md': '# widgets\n',
  'scripts/agent.sh': AGENT,
  // What `npm ci` stands for in an environment: files git does not track, made once.
  'scripts/setup.sh': '#!/bin/bash\nset -e\nmkdir -p node_modules/dep && date > node_modules/dep/installed\n',
  '.gitignore': 'node_modules/\n',
};

/** A task's start phases from its audit record. */
async function startOf(world: E2eWorld, taskId: string): Promise<TaskStart> {
  const events = await world.audit.events(taskId, { limit: 100_000 });
  const at = (what: string, match: (e: (typeof events)[number]) => boolean) => {
    const event = events.find(match);
    if (!event) throw new Error(`task ${taskId} has no ${what} event`);
    return Date.parse(event.ts);
  };
  const starting = at('task.state starting', (e) => e.type === 'task.state' && e.data.state === 'starting');
  const vm = at('vm.created', (e) => e.type === 'vm.created');
  const agent = at('agent.info', (e) => e.type === 'agent.info');
  const running = at('agent output', (e) => e.type === 'agent.event' && e.data.text === 'agent running');
  const delta = events.find((e) => e.type === 'workspace.delta')?.data.path;
  return {
    total: running - starting,
    vm: vm - starting,
    workspace: agent - vm,
    agent: running - agent,
    ...(typeof delta === 'string' ? { delta } : {}),
  };
}

/** Runs `runs` tasks of each path, alternated; returns each path's starts and the build time. */
export async function measureTaskStarts(
  runs: number,
  accel: 'kvm' | 'tcg',
): Promise<{
  starts: Record<Path, TaskStart[]>;
  buildMs: number;
}> {
  let pooled: MicroVmSandbox | undefined;
  /** For each restore asked of the warm world's sandbox: whether a warm VM waited for it. */
  const tookWarm: boolean[] = [];
  const worlds: Partial<Record<Path, E2eWorld>> = {};
  try {
    worlds.cold = await startE2eWorld({
      appSlug: 'bench-cold',
      accel,
      coldBoots: true,
      files: { ...FILES, '.github/airlock.yml': config(false) },
    });
    worlds.restore = await startE2eWorld({
      appSlug: 'bench-restore',
      accel,
      files: { ...FILES, '.github/airlock.yml': config(true) },
    });
    worlds.warm = await startE2eWorld({
      appSlug: 'bench-warm',
      accel,
      warmPool: 1,
      wrapSandbox: (sandbox) => {
        const real = sandbox as MicroVmSandbox;
        pooled = real;
        return new Proxy(real, {
          get(target, property) {
            if (property === 'create')
              return (spec: VmSpec, signal?: AbortSignal) => {
                if (spec.from && spec.from !== 'cold') tookWarm.push(real.warmCount(spec.from) > 0);
                return real.create(spec, signal);
              };
            const value = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
      },
      files: { ...FILES, '.github/airlock.yml': config(true) },
    });
    const all = worlds as Record<Path, E2eWorld>;
    // First tasks, not measured: the environments are built, and the warm pool starts filling.
    for (const path of ['cold', 'restore', 'warm'] as const) {
      const task = await all[path].labelIssue(`First ${path}`, 'Start.', { timeoutMs: 1_800_000 });
      if (task.state !== 'succeeded') throw new Error(`the first ${path} task ${task.state}: ${task.reason}`);
    }
    const [build] = await all.restore.airlock.environments!.store.listBuilds();
    if (!build?.startedAt || !build.finishedAt) throw new Error('the restore world built no environment');
    const env = await all.warm.airlock.environments!.store.current('acme/widgets');
    const snapshot = env && (await pooled!.openSnapshot(env.dir));
    if (!snapshot) throw new Error('the warm world has no environment snapshot');

    const starts: Record<Path, TaskStart[]> = { cold: [], restore: [], warm: [] };
    for (let i = 0; i < runs; i++) {
      // Alternated, so load changes on a shared machine touch every path alike.
      for (const path of ['cold', 'restore', 'warm'] as const) {
        const world = all[path];
        // A restore fetches what changed upstream since its environment was built.
        if (path !== 'cold') await world.pushToMain({ 'README.md': `# widgets ${i}\n` }, `change ${i}`);
        // A warm VM waits (paused, using no CPU): no refill runs during a measurement.
        await pooled!.whenWarm(snapshot);
        const taken = tookWarm.length;
        const task = await world.labelIssue(`Start ${path} ${i}`, 'Start.');
        if (task.state !== 'succeeded') throw new Error(`task ${task.id} ${task.state}: ${task.reason}`);
        const start = await startOf(world, task.id);
        const how = (await world.audit.events(task.id)).find((e) => e.type === 'vm.created')?.data.start;
        if ((path === 'cold') !== (how === 'cold')) throw new Error(`the ${path} task's VM started ${how}`);
        if (path === 'warm' && !(tookWarm.length === taken + 1 && tookWarm[taken]))
          throw new Error(`the warm task ${task.id} did not take a warm VM`);
        starts[path].push(start);
        process.stderr.write(`${path} ${i + 1}/${runs}: ${Math.round(start.total)} ms\n`);
      }
    }
    return {
      starts,
      buildMs: Date.parse(build.finishedAt) - Date.parse(build.startedAt),
    };
  } finally {
    for (const world of Object.values(worlds)) await world.close();
  }
}

/** How many of a path's starts brought their workspace up to date each way (`host_mirror`, `guest_fetch`). */
export function deltaPaths(starts: TaskStart[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { delta } of starts) if (delta) counts[delta] = (counts[delta] ?? 0) + 1;
  return counts;
}

/** p50 and p95 of each phase of a path's starts. */
export function startFigures(starts: TaskStart[]): Record<string, number> {
  const figures: Record<string, number> = {};
  for (const phase of ['total', 'vm', 'workspace', 'agent'] as const) {
    const values = starts.map((s) => s[phase]);
    figures[`${phase}_p50_ms`] = round(median(values));
    figures[`${phase}_p95_ms`] = round(quantile(values, 0.95));
  }
  return figures;
}
