import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { type ControlPlane, startControlPlane } from '../../src/control-plane.ts';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { VmTaskRunner } from '../../src/tasks/vm-task-runner.ts';
import { type AirlockServer, startHttpServer } from '../../src/web/http-server.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// The whole flow on a real microVM: a signed issues.labeled webhook → task → VM → clone through the
// credential proxy → the repository's script agent → commit → push through the proxy → draft PR.
let gh: GitHubEmulator;
let dir: string;
let db: Db;
let plane: ControlPlane;
let audit: AuditLog;
let server: AirlockServer | undefined;
let webhookUrl: string;
let installationId: number;

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "reading the task"
grep -q "Make the greeting friendlier" "$AIRLOCK_PROMPT_FILE"
echo "Hello, friendly world" > greeting.txt
echo "running the tests"
test "$(cat greeting.txt)" = "Hello, friendly world"
# Hostile attempts: none of these may work, all must be on the record.
git -c user.name=evil -c user.email=evil@example.invalid commit -q --allow-empty -m "rewrite main"
git push origin HEAD:refs/heads/main 2>&1 | grep -o "airlock: pushes are limited to [^ ]*" || true
git reset -q --soft HEAD~1
env | grep -i -E "token|ghs_|key" || echo "no credentials in my environment"
echo "done: updated greeting.txt"
`;

beforeAll(async () => {
  gh = await startGitHubEmulator({ appSlug: 'airlock-e2e' });
  await gh.createRepo('acme', 'widgets', {
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024\n',
    },
  });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  installationId = gh.installApp('acme');
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-e2e-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
  const redactor = new SecretRedactor();
  const { log } = memoryLogger(redactor);
  audit = new AuditLog(db, systemClock, redactor);
  const sandbox = new MicroVmSandbox({
    image: testVmImage(),
    accel: 'tcg',
    dataDir: dir,
    log,
    tscKhz: hostTscKhz(),
  });
  const tasks = new TaskStore(db, systemClock);
  const runner = new VmTaskRunner({
    sandbox,
    audit,
    log,
    dataDir: dir,
    token: { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor },
    gitUrl: (owner, name) => gh.gitUrl(owner, name),
    models: {},
    app: { slug: gh.app.slug },
    issueThread: async (task) => {
      const issue = gh.state.issues.find((i) => i.number === task.issueNumber)!;
      return { title: issue.title, body: issue.body, author: issue.user, comments: [] };
    },
    earlierTasks: (task) => tasks.onBranch(task.repoFullName, task.branch),
  });
  plane = await startControlPlane({
    db,
    clock: systemClock,
    log,
    audit,
    github: {
      appId: gh.app.id,
      privateKey: gh.app.privateKey,
      webhookSecret: gh.app.webhookSecret,
      apiUrl: gh.apiUrl,
      appSlug: gh.app.slug,
    },
    publicUrl: 'http://airlock.test',
    runner,
    reaper: sandbox,
    limits: { maxConcurrent: 1, maxPerRepo: 1 },
    octokitTuning: { retryBaseMs: 5 },
    pollMs: 100,
  });
  server = await startHttpServer({ host: '127.0.0.1', port: 0, webhooks: plane.webhooks });
  webhookUrl = server.webhookUrl;
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  await server?.close();
  db?.close();
  await gh?.close();
  await rm(dir, { recursive: true, force: true });
});

it('turns a labelled issue into a pushed branch and a draft PR, made in a microVM', async () => {
  const issue = gh.createIssue('acme/widgets', {
    title: 'Friendlier greeting',
    body: 'Make the greeting friendlier.',
    user: 'alice',
  });
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101 },
    installationId,
  });
  payload.issue = { ...payload.issue, number: issue.number, title: issue.title, pull_request: undefined };
  payload.label = { ...payload.label, name: 'airlock' };
  expect((await gh.sendWebhook(webhookUrl, 'issues', payload, { deliveryId: 'e2e-1' })).status).toBe(200);

  const task = await waitFor(
    () => plane.tasks.list().find((t) => t.state === 'succeeded' || t.state === 'failed'),
    600_000,
    'the task to finish',
  );
  expect(task.reason ?? '').toBe('');
  expect(task.state).toBe('succeeded');
  await plane.quiesce();

  // The branch holds the agent's change, committed by the app with the requester as co-author.
  const repoDir = gh.state.repos.get('acme/widgets')!.dir;
  const git = (...args: string[]) =>
    execFileSync('git', ['--git-dir', repoDir, ...args], { encoding: 'utf8' });
  expect(git('show', `${task.branch}:greeting.txt`)).toBe('Hello, friendly world\n');
  expect(git('log', '-1', '--format=%an <%ae>', task.branch).trim()).toBe(
    'airlock-e2e[bot] <airlock-e2e[bot]@users.noreply.github.com>',
  );
  const body = git('log', '-1', '--format=%B', task.branch);
  expect(body).toContain(`#${issue.number}`);
  expect(body).toContain('Co-authored-by: alice <101+alice@users.noreply.github.com>');
  expect(git('rev-parse', 'main').trim()).toBe(git('rev-parse', `${task.branch}~1`).trim());

  // A draft PR links the audit record; the push to main was refused and only the task branch moved.
  const pr = gh.state.pulls.find((p) => p.head.ref === task.branch)!;
  expect(pr).toMatchObject({ draft: true, base: { ref: 'main' } });
  expect(pr.body).toContain(`http://airlock.test/tasks/${task.id}`);
  expect(gh.state.pushes.map((p) => p.ref)).toEqual([`refs/heads/${task.branch}`]);

  // The record: the VM, every process it ran, the refused push, the diff, the revoked token.
  const events = audit.events(task.id);
  const types = events.map((e) => e.type);
  for (const type of [
    'task.created',
    'token.minted',
    'vm.created',
    'vm.exec',
    'task.prompt',
    'agent.event',
    'git.diff',
    'token.revoked',
    'cleanup.vm',
  ]) {
    expect(types, type).toContain(type);
  }
  const execs = events.filter((e) => e.type === 'vm.exec').map((e) => (e.data.argv as string[]).join(' '));
  expect(execs.some((a) => a.startsWith('bash scripts/agent.sh'))).toBe(true);
  expect(execs.some((a) => a.includes('grep -q Make the greeting friendlier'))).toBe(true);
  const refused = events.filter((e) => e.type === 'git.ref_update' && e.data.decision === 'refused');
  expect(refused.map((e) => e.data.ref)).toContain('refs/heads/main');
  const said = events.filter((e) => e.type === 'agent.event').map((e) => String(e.data.text));
  expect(said).toContain('no credentials in my environment');
  expect(said).toContain(`airlock: pushes are limited to refs/heads/${task.branch}`);
  expect(verifyAuditChains(db, task.id).ok).toBe(true);
}, 900_000);
