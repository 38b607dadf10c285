import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { inspectBeforeDestroy } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  containsSecret as contains,
  expectCanariesFound,
  expectNotInGuest,
  type GuestScan,
  type ScanCanaries,
  scanVm,
} from '../helpers/guest-scan.ts';

// The security claim "no credential ever enters the VM", checked where it could fail: a real task
// clones and pushes with a minted token and calls a model with a configured key, both through the
// proxy; just before the VM is destroyed, every process's environment and command line, the kernel
// command line, the serial log, a dump of guest RAM taken through QEMU's monitor, and both disks are
// searched for the token and the key. Canaries planted in each place prove each search can find.

const MODEL_KEY = `sk-ant-airlock-${randomBytes(16).toString('hex')}`;
const ENV_CANARY = `env-canary-${randomBytes(8).toString('hex')}`;
const DISK_CANARY = `disk-canary-${randomBytes(8).toString('hex')}`;
const SERIAL_CANARY = `serial-canary-${randomBytes(8).toString('hex')}`;

const AGENT_SCRIPT = `#!/bin/bash
set -e
model() {
  node -e '
  fetch("http://10.0.2.100/anthropic/v1/messages", {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "placeholder", "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ model: "claude-test", max_tokens: 16, messages: [{ role: "user", content: process.argv[1] }] }),
  }).then(async (r) => console.log("model answered", r.status, JSON.stringify([...r.headers]), await r.text()));
  ' "$1"
}
if grep -q "SCENARIO: errors" "$AIRLOCK_PROMPT_FILE"; then
  # The error paths, each answer kept on disk and in memory where a leaked secret would be found:
  # a push the proxy refuses, a model call the provider refuses (echoing the key), then a model
  # answer that overruns the budget, which ends the task while the agent still runs.
  echo "not allowed" > elsewhere.txt
  git add elsewhere.txt
  git -c user.name=agent -c user.email=agent@example.invalid commit -q -m "push elsewhere"
  git push origin HEAD:main > push-refused.txt 2>&1 || true
  model "SCENARIO unauthorized" > model-refused.txt
  model "SCENARIO spend" > model-spend.txt
  sleep 600
  exit 0
fi
# Positive control: a canary on disk (the process canary is planted by the scan, since the agent
# user's leftover processes are killed when the agent exits).
echo "${DISK_CANARY}" > canary.txt
# A model call through the proxy with a placeholder key; the proxy puts the real one on upstream.
model "hi"
echo "changed" > greeting.txt
`;

let world: E2eWorld;
let upstream: ScenarioUpstream;
let scan: GuestScan | undefined;
const canaries: ScanCanaries = { env: ENV_CANARY, serial: SERIAL_CANARY };

/** The real sandbox, whose VMs are scanned just before they are destroyed. */
function scanningSandbox(real: Sandbox): Sandbox {
  return inspectBeforeDestroy(real, async (vm) => {
    scan = await scanVm(vm, canaries).catch((error) => {
      throw new Error(`scan failed: ${(error as Error).message}`);
    });
  });
}

interface ScenarioUpstream {
  url: string;
  /** The `x-api-key` each request arrived with, in order. */
  keys: string[];
  close(): void;
}

/**
 * An Anthropic upstream that answers by the prompt: `SCENARIO unauthorized` gets a 401 that echoes
 * the key it was sent (the worst a provider could do), `SCENARIO spend` an answer reporting a
 * million tokens, anything else a short answer.
 */
async function startScenarioUpstream(): Promise<ScenarioUpstream> {
  const keys: string[] = [];
  const server = createServer(async (req, res) => {
    const key = String(req.headers['x-api-key']);
    keys.push(key);
    let body = '';
    for await (const chunk of req) body += chunk;
    if (body.includes('SCENARIO unauthorized')) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `x-api-key error="invalid_key" key="${key}"`,
        'anthropic-organization-id': `org-of-${key}`,
      });
      res.end(
        JSON.stringify({
          type: 'error',
          error: { type: 'authentication_error', message: `invalid x-api-key ${key}` },
        }),
      );
      return;
    }
    const usage = body.includes('SCENARIO spend')
      ? { input_tokens: 3, output_tokens: 1_000_000 }
      : { input_tokens: 3, output_tokens: 1 };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-test',
        content: [{ type: 'text', text: 'hello' }],
        stop_reason: 'end_turn',
        usage,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    keys,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

beforeAll(async () => {
  upstream = await startScenarioUpstream();
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nbudget:\n  max_tokens: 100000\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 1024\n',
    },
    models: {
      anthropic: { url: upstream.url, apiKey: MODEL_KEY },
    },
    wrapSandbox: scanningSandbox,
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
  upstream?.close();
});

it('keeps the task token and the model key out of the VM: environments, command lines, serial log, RAM and disks', async () => {
  const task = await world.labelIssue('Change the greeting', 'Please change the greeting.');
  // A succeeded task's reason is its outcome.
  expect(task.reason ?? '').toMatch(/^changes pushed/);
  expect(task.state).toBe('succeeded');
  expect(scan, 'the VM was scanned before it was destroyed').toBeDefined();
  const found = scan!;

  // The credentials were in play: the token pushed the branch, the key reached the model upstream.
  const push = world.gh.state.pushes.find((p) => p.ref === `refs/heads/${task.branch}`);
  expect(push).toBeDefined();
  const token = push!.token;
  expect(upstream.keys).toEqual([MODEL_KEY]);

  // Each search finds what was planted where it looks.
  expectCanariesFound(found, canaries);
  expect(contains(found.scratch, DISK_CANARY)).toBe(true);

  expectNoSecret(found, token);

  // After the task the token is revoked: the emulator refuses it.
  const answer = await fetch(`${world.gh.apiUrl}/repos/acme/widgets`, {
    headers: { authorization: `token ${token}` },
  });
  expect(answer.status).toBe(401);
}, 900_000);

it('keeps them out on the error paths too: a refused push, a provider refusing the key, a budget overrun', async () => {
  scan = undefined;
  const keysBefore = upstream.keys.length;
  const task = await world.labelIssue('Go wrong', 'SCENARIO: errors');
  expect(task.state).toBe('failed');
  expect(task.reason ?? '').toMatch(/^budget_exceeded:/);
  expect(scan, 'the VM was scanned before it was destroyed').toBeDefined();
  const found = scan!;

  // Each error path was taken, and its answer is where the scan looks.
  expect(world.gh.state.pushes.filter((p) => p.ref === 'refs/heads/main')).toEqual([]);
  expect(contains(found.scratch, 'airlock: pushes are limited to')).toBe(true);
  expect(contains(found.scratch, "refused airlock's credentials (HTTP 401)")).toBe(true);
  expect(upstream.keys.slice(keysBefore)).toEqual([MODEL_KEY, MODEL_KEY]);
  expect((await world.audit.events(task.id)).map((e) => e.type)).toContain('proxy.budget_exceeded');

  // Task tokens are the ones scoped to contents alone; this task's is among them, revoked.
  const taskTokens = world.gh.state.tokens.filter(
    (t) => Object.keys(t.permissions).sort().join() === 'contents,metadata',
  );
  expect(taskTokens.length).toBeGreaterThan(0);
  expect(taskTokens.filter((t) => !t.revoked)).toEqual([]);
  for (const { token } of taskTokens) expectNoSecret(found, token);
}, 900_000);

/** Fails when the task token or the model key is anywhere the scan read. */
function expectNoSecret(found: GuestScan, token: string): void {
  expectNotInGuest(found, 'task token', token);
  expectNotInGuest(found, 'model key', MODEL_KEY);
}
