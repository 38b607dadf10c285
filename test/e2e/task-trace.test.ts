import { afterAll, beforeAll, expect, it } from 'vitest';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  type OtlpReceiver,
  type ReceivedSpan,
  spansOfTrace,
  startOtlpReceiver,
} from '../helpers/otlp-receiver.ts';

// One task on a real microVM, traced: the run's VM, workspace, agent, push and every request its
// proxy served are spans of the task's trace, exported over OTLP to a loopback receiver.
let world: E2eWorld;
let receiver: OtlpReceiver;

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "traced" > traced.txt
echo "done: wrote traced.txt"
`;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  world = await startE2eWorld({
    files: {
      'README.md': '# widgets\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024\n',
    },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint },
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
  await receiver?.close();
});

it("records the VM, the workspace, the agent, the push and each proxy request in the task's trace", async () => {
  const task = await world.labelIssue('Traced', 'Write traced.txt.');
  expect(task.state).toBe('succeeded');
  await world.plane.quiesce();
  await world.airlock.tracing.flush();

  const traceId = task.context.traceParent?.split('-')[1];
  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
  const trace = spansOfTrace(receiver.spans, traceId!);
  const one = (name: string): ReceivedSpan => {
    const spans = trace.get(name) ?? [];
    expect(spans, name).toHaveLength(1);
    return spans[0]!;
  };
  const run = one('task.run');
  const vm = one('vm.create');
  const workspace = one('workspace.prepare');
  const agent = one('agent.run');
  const push = one('git.push');
  const destroy = one('vm.destroy');
  for (const span of [vm, workspace, agent, push, destroy])
    expect(span.parentSpanId, span.name).toBe(run.spanId);
  expect(vm.attributes).toMatchObject({ 'airlock.vm.accelerator': 'tcg' });
  expect(['cold', 'restored']).toContain(vm.attributes['airlock.vm.start']);
  expect(Number(vm.attributes['airlock.vm.boot_ms'])).toBeGreaterThan(0);
  expect(agent.attributes).toMatchObject({ 'airlock.agent': 'script', 'airlock.agent.exit_code': 0 });
  expect(push.attributes['airlock.push.by']).toBe('guest');
  expect(destroy.attributes).toMatchObject({
    'airlock.vm.process_gone': true,
    'airlock.vm.overlay_deleted': true,
  });
  // In order: the VM exists before the workspace is prepared, the agent runs, then the push.
  expect(vm.endNs).toBeLessThanOrEqual(workspace.startNs);
  expect(workspace.endNs).toBeLessThanOrEqual(agent.startNs);
  expect(agent.endNs).toBeLessThanOrEqual(push.startNs);

  // The clone and the push went through the proxy: git requests to the emulator, from this run.
  const git = (trace.get('proxy.request') ?? []).filter((s) => s.attributes['airlock.proxy.kind'] === 'git');
  expect(git.length).toBeGreaterThanOrEqual(2);
  for (const request of git) {
    expect(request.parentSpanId).toBe(run.spanId);
    expect(request.attributes).toMatchObject({
      'server.address': '127.0.0.1',
      'http.response.status_code': 200,
    });
    expect(Number(request.attributes['airlock.proxy.bytes_to_vm'])).toBeGreaterThan(0);
  }
  const posts = git.filter((s) => s.attributes['http.request.method'] === 'POST');
  expect(posts.length).toBeGreaterThanOrEqual(2);
  expect(posts.some((s) => push.startNs <= s.startNs && s.endNs <= push.endNs)).toBe(true);
}, 900_000);
