import { rm } from 'node:fs/promises';
import path from 'node:path';
import { context, type Tracer, trace } from '@opentelemetry/api';
import { agentAdapter } from '../agents/agent-registry.ts';
import { type AgentRunResult, runAgent } from '../agents/run-agent.ts';
import type { AuditSink } from '../audit-sink.ts';
import type { RepoConfig } from '../config/repo-config.ts';
import type { EnvironmentLease, Environments } from '../environments/environments.ts';
import { AgentConfigError, errorMessage } from '../errors.ts';
import type { GitMirrors } from '../git/git-mirrors.ts';
import { type TaskCredential, type TaskTokenDeps, taskCredential } from '../github/task-token.ts';
import type { Logger } from '../logger.ts';
import { whenAborted } from '../process/when-aborted.ts';
import type { DestinationSecret } from '../proxy/destination-secret.ts';
import { createEgressCa, type EgressCa } from '../proxy/egress-ca.ts';
import type { ModelUpstreams } from '../proxy/model-proxy.ts';
import { startTaskProxy, type TaskProxy } from '../proxy/task-proxy.ts';
import { GUEST_CA_ENV, installEgressCa } from '../sandbox/guest-ca.ts';
import { GUEST_PROXY_ADDRESS } from '../sandbox/qemu-args.ts';
import type { GuestExec, Sandbox, Vm, VmSpec } from '../sandbox/sandbox.ts';
import { inSpan } from '../tracing/in-span.ts';
import type { HeldResults } from './held-results.ts';
import {
  applyHostDelta,
  DELTA_WAIT_MS,
  deltaWithin,
  type HostDelta,
  type PreparedWorkspace,
  prepareHostDelta,
} from './restored-workspace.ts';
import { splitRepo, type Task, type TaskResult } from './task.ts';
import { taskPrompt } from './task-prompt.ts';
import { TaskFailure, type TaskRunContext, type TaskRunner } from './task-runner.ts';
import type { PromptThread } from './task-thread.ts';
import {
  commitWorkspace,
  gitConfigEntries,
  pushWorkspace,
  resetGitMetadata,
  runnerGit,
  type Workspace,
} from './workspace-git.ts';
import { workspaceSteps } from './workspace-steps.ts';

/** How long teardown waits for the guest's last exec records. */
const AUDIT_SYNC_TIMEOUT_MS = 5_000;
/** What the runner needs from the rest of airlock. */
export interface VmTaskRunnerDeps {
  sandbox: Sandbox;
  audit: AuditSink;
  log: Logger;
  /** Spans of the run's steps and its proxy's requests, children of the span active in run(). */
  tracer: Tracer;
  dataDir: string;
  /** GitHub App credentials for minting task tokens (absent in local mode). */
  token?: Omit<TaskTokenDeps, 'fetch'>;
  /**
   * The credential the task's proxy uses upstream. Defaults to a GitHub installation token scoped
   * to the task's repository (minted from `token`); local mode passes its local server's secret.
   */
  credentialFor?(task: Task): TaskCredential;
  /**
   * The read-only credential for the other repositories a task may fetch (`names`). Defaults to
   * one minted from `token`; a worker asks the control plane, which holds the App key.
   */
  readCredentialFor?(task: Task, names: readonly string[]): TaskCredential;
  /** Upstream smart-HTTP URL of a repository. */
  gitUrl(owner: string, name: string): string;
  models: ModelUpstreams;
  /** The app's slug, for the bot identity commits are made under. */
  app: { slug(): string };
  /**
   * The thread behind a task as its prompt gets it: the text frozen at the trigger plus later
   * comments from people with write access (undefined for tasks without one, as in local mode).
   */
  promptThread(task: Task): Promise<PromptThread | undefined>;
  /** The tasks on the task's branch before it, oldest first (for the prompt). */
  earlierTasks(task: Task): Promise<Task[]>;
  /** The model features (`models.allow`) the repository asks for and the operator permits. */
  modelFeatures(task: Task): readonly string[];
  /** Repositories' environments: a task of one that configures it restores from its snapshot. */
  environments?: Pick<Environments, 'forTask'>;
  /** Where results wait for approval before they are pushed (`approval.before_push: always`). */
  held?: Pick<HeldResults, 'prepare' | 'repoPath'>;
  /** The credentials the operator grants the task's repository (policy `secrets:`); none when unset. */
  destinationSecrets?(task: Task): readonly DestinationSecret[];
  /** Other repositories (owner/name) the task may fetch read-only (policy `read_repositories:`). */
  readRepositories?(task: Task): readonly string[];
  /**
   * The host's mirrors of task repositories: a restored task's workspace is brought up to date
   * from them (without them, the guest fetches what changed itself).
   */
  mirrors?: GitMirrors;
}

const AGENT_UID = 1000;
const REPO_DIR = '/work/repo';
const PROMPT_FILE = '/work/prompt.md';
const PROXY = `http://${GUEST_PROXY_ADDRESS}`;

/**
 * Runs a task in its own microVM: mints its single-repository token into a per-task proxy, boots
 * the VM with only that proxy reachable, clones, runs setup and the agent as the unprivileged agent
 * user, commits under the app's identity with the requester as co-author, and pushes the task's
 * branch through the proxy. Whatever happens, the VM is destroyed and the token revoked.
 */
export class VmTaskRunner implements TaskRunner {
  readonly #deps: VmTaskRunnerDeps;

  constructor(deps: VmTaskRunnerDeps) {
    this.#deps = deps;
  }

  async run(task: Task, ctx: TaskRunContext): Promise<TaskResult> {
    const { audit } = this.#deps;
    const { config } = task;
    const { owner, repo } = splitRepo(task.repoFullName);
    // A result that waits for approval is pushed into a repository on the host, not upstream.
    // (Local mode has no approvals: its branch goes to the person's own repository.)
    const held = config.approval.before_push === 'always' ? this.#deps.held : undefined;
    // What the host records as pushed is what its proxy forwarded (or held), never what the guest says.
    const pushed: { head?: string; held: boolean } = { held: held !== undefined };
    const proxyAudit: AuditSink = {
      append: (taskId, type, data) => {
        if (
          type === 'git.ref_update' &&
          data.decision === (held ? 'held' : 'forwarded') &&
          data.ref === `refs/heads/${task.branch}`
        )
          pushed.head = String(data.new);
        audit.append(taskId, type, data);
      },
    };
    const budget = new AbortController();
    const signal = AbortSignal.any([ctx.signal, budget.signal]);
    let proxy: TaskProxy | undefined;
    let vm: Vm | undefined;
    let egressCa: EgressCa | undefined;
    let environment: EnvironmentLease | undefined;
    try {
      // First, before a token or proxy is held: the task may wait here for its environment's build.
      environment = await this.#deps.environments?.forTask(task, signal);
      const credential = this.#credential(task);
      await credential.token();
      // The host brings its mirror up to date while the proxy starts and the VM is restored.
      const delta =
        environment && this.#deps.mirrors
          ? prepareHostDelta(
              { mirrors: this.#deps.mirrors, audit },
              {
                task,
                env: environment.env,
                url: this.#deps.gitUrl(owner, repo),
                token: () => credential.token(),
                remote: remoteOf(owner, repo),
                signal,
              },
            )
          : undefined;
      await held?.prepare(task, this.#deps.gitUrl(owner, repo), () => credential.token());
      const reads = this.#readRepositories(task);
      const secrets = this.#deps.destinationSecrets?.(task) ?? [];
      try {
        // Minted now, so a repository the installation does not cover fails the task with
        // GitHub's reason instead of failing the guest's fetch later.
        await reads.readRepositories?.credential.token();
        if (secrets.length) {
          // The CA's key stays in the task's proxy directory on the host, and goes with it.
          egressCa = await createEgressCa({
            dir: path.join(this.#deps.dataDir, 'proxy', task.id, 'egress-ca'),
            hosts: secrets.map((s) => s.host),
            label: task.id,
          });
          audit.append(task.id, 'proxy.secrets_bound', {
            secrets: secrets.map((s) => ({ name: s.name, host: s.host, port: s.port })),
          });
        }
      } catch (error) {
        // No proxy holds the tokens yet to revoke them when it closes.
        await Promise.allSettled([credential.revoke(), reads.readRepositories?.credential.revoke()]);
        throw error;
      }
      proxy = await startTaskProxy({
        taskId: task.id,
        repository: { owner, name: repo },
        branch: task.branch,
        listen: { socketPath: path.join(this.#deps.dataDir, 'proxy', task.id, 'proxy.sock') },
        gitUrl: this.#deps.gitUrl,
        credential,
        models: this.#deps.models,
        egressAllow: config.egress.allow,
        ...(egressCa ? { destinationSecrets: { ca: egressCa, secrets } } : {}),
        ...reads,
        modelFeatures: this.#deps.modelFeatures(task),
        budgetTokens: config.budget.max_tokens,
        ...(held ? { holdPushesIn: held.repoPath(task.id) } : {}),
        onBudgetExceeded: (usage) =>
          budget.abort(
            new TaskFailure(
              'budget_exceeded',
              `the task used ${usage.inputTokens + usage.outputTokens} model tokens, over its budget`,
            ),
          ),
        audit: proxyAudit,
        log: ctx.log,
        trace: { tracer: this.#deps.tracer, parent: context.active() },
      });
      const { limits } = config;
      // A restore has the snapshot's shape: the limits the environment was built with.
      const shape = environment?.snapshot.shape ?? {
        cpus: limits.cpus,
        memoryMib: limits.memory_mib,
        diskMib: limits.disk_mib,
      };
      const spec: VmSpec = {
        taskId: task.id,
        ...shape,
        proxySocket: proxy.address,
        outputLimitBytes: limits.output_kib * 1024,
        ...(environment ? { from: environment.snapshot } : {}),
      };
      vm = await inSpan(this.#deps.tracer, 'vm.create', {}, async (span) => {
        const created = await this.#deps.sandbox.create(spec, signal);
        span.setAttributes({
          'airlock.vm.id': created.id,
          'airlock.vm.start': created.start,
          'airlock.vm.accelerator': created.accel,
          'airlock.vm.boot_ms': Math.round(created.bootMs),
          ...(created.queuedMs !== undefined ? { 'airlock.vm.queued_ms': Math.round(created.queuedMs) } : {}),
        });
        return created;
      });
      audit.append(task.id, 'vm.created', {
        id: vm.id,
        image: this.#deps.sandbox.imageDigest,
        accelerator: vm.accel,
        start: vm.start,
        bootMs: Math.round(vm.bootMs),
        ...(vm.queuedMs !== undefined ? { queuedMs: Math.round(vm.queuedMs) } : {}),
        limits,
        ...(environment ? { environment: environment.env.id, shape } : {}),
      });
      vm.onExecAudit((record) => audit.append(task.id, 'vm.exec', { ...record }));
      vm.onExecAuditLoss(({ kind, ...loss }) =>
        audit.append(task.id, kind === 'dropped' ? 'vm.exec.dropped' : 'vm.exec_audit_gap', loss),
      );
      vm.onMalformed((line, error) => audit.append(task.id, 'vm.malformed_output', { line, error }));
      const died = vm.exited.then((why) => {
        throw new TaskFailure(
          why.includes('output limit') ? 'limit_exceeded' : 'sandbox_failed',
          `the VM stopped: ${why}`,
        );
      });
      const stopped = whenAborted(signal);
      // Both settle after the work is done too (teardown, later aborts): keep those outcomes handled.
      died.catch(() => {});
      stopped.catch(() => {});
      if (egressCa) await installEgressCa(vm, egressCa);
      const trust = egressCa ? GUEST_CA_ENV : {};
      return await Promise.race([
        this.#work(task, config, vm, ctx, signal, pushed, trust, environment ? { delta } : undefined),
        died,
        stopped,
      ]);
    } catch (error) {
      if (signal.aborted && budget.signal.aborted) throw budget.signal.reason;
      throw error;
    } finally {
      if (vm) {
        const gone = vm;
        await inSpan(
          this.#deps.tracer,
          'vm.destroy',
          { attributes: { 'airlock.vm.id': gone.id } },
          async (span) => {
            // Exec records reach the host through the guest's kernel log; wait for the last ones
            // before the VM goes, so the record holds every process it ran.
            await gone
              .syncAudit(AUDIT_SYNC_TIMEOUT_MS)
              .catch((e) => audit.append(task.id, 'vm.exec_audit_incomplete', { reason: errorMessage(e) }));
            const checked = await gone.destroy().catch((e) => {
              ctx.log.error({ err: errorMessage(e) }, 'VM teardown failed');
              return { processGone: false, overlayDeleted: false };
            });
            span.setAttributes({
              'airlock.vm.process_gone': checked.processGone,
              'airlock.vm.overlay_deleted': checked.overlayDeleted,
            });
            audit.append(task.id, 'cleanup.vm', { vm: gone.id, ...checked });
          },
        );
      }
      if (proxy) {
        const closed = await proxy.close();
        audit.append(task.id, 'cleanup.proxy', { ...closed, usage: proxy.usage() });
      }
      if (egressCa) await rm(egressCa.dir, { recursive: true, force: true });
      // Only now, with its VM gone, may the environment's files be collected.
      environment?.release();
    }
  }

  #credential(task: Task): TaskCredential {
    if (this.#deps.credentialFor) return this.#deps.credentialFor(task);
    if (task.installationId === null || !this.#deps.token)
      throw new TaskFailure('internal', 'the task has no GitHub installation to mint a token for');
    const { owner, repo } = splitRepo(task.repoFullName);
    return taskCredential(
      { ...this.#deps.token, audit: this.#deps.audit },
      { taskId: task.id, installationId: task.installationId, repository: { owner, name: repo } },
    );
  }

  /** The read-only credential for the other repositories the task may fetch, if any. */
  #readRepositories(task: Task): { readRepositories?: { names: string[]; credential: TaskCredential } } {
    const names = (this.#deps.readRepositories?.(task) ?? []).filter(
      (name) => name.toLowerCase() !== task.repoFullName.toLowerCase(),
    );
    if (!names.length) return {};
    if (this.#deps.readCredentialFor)
      return { readRepositories: { names, credential: this.#deps.readCredentialFor(task, names) } };
    if (task.installationId === null || !this.#deps.token)
      throw new TaskFailure(
        'setup_failed',
        `read_repositories (${names.join(', ')}) needs a GitHub App installation to mint a read-only token; this task has none`,
      );
    const { owner, repo } = splitRepo(task.repoFullName);
    const credential = taskCredential(
      { ...this.#deps.token, audit: this.#deps.audit },
      {
        taskId: task.id,
        installationId: task.installationId,
        repository: { owner, name: repo },
        readOnly: names.map((name) => splitRepo(name).repo),
      },
    );
    return { readRepositories: { names, credential } };
  }

  async #work(
    task: Task,
    config: RepoConfig,
    vm: Vm,
    ctx: TaskRunContext,
    signal: AbortSignal,
    pushed: { head?: string; held: boolean },
    trust: Readonly<Record<string, string>>,
    /** Restored from an environment: with the delta the host prepares, if it keeps mirrors. */
    restored: { delta: Promise<HostDelta | { fallback: string }> | undefined } | undefined,
  ): Promise<TaskResult> {
    const { audit } = this.#deps;
    const { owner, repo } = splitRepo(task.repoFullName);
    await ctx.enterPhase('running');
    const agentEnv = {
      HOME: '/home/agent',
      GIT_TERMINAL_PROMPT: '0',
      HTTP_PROXY: `${PROXY}:80`,
      HTTPS_PROXY: `${PROXY}:80`,
      NO_PROXY: GUEST_PROXY_ADDRESS,
      ...trust,
    };
    const sh = async (
      what: string,
      request: GuestExec,
      failure: 'setup_failed' | 'agent_failed' | 'push_refused' | 'internal',
    ) => {
      let output = '';
      const result = await vm.exec(
        { uid: AGENT_UID, cwd: REPO_DIR, ...request, env: { ...agentEnv, ...request.env } },
        (_s, d) => {
          output = (output + d).slice(-64 * 1024);
        },
        signal,
      );
      if (result.code !== 0)
        throw new TaskFailure(
          failure,
          `${what} failed (exit ${result.code ?? result.signal}): ${output.trim().split('\n').slice(-8).join('\n')}`,
        );
      return output;
    };

    const remote = remoteOf(owner, repo);
    const workspace = { vm, repoDir: REPO_DIR, uid: AGENT_UID, signal };
    const prepared = {
      'airlock.workspace.restored': restored !== undefined,
      'airlock.workspace.setup_commands': config.setup.length,
    };
    const { base, cloned } = await inSpan(
      this.#deps.tracer,
      'workspace.prepare',
      { attributes: prepared },
      async (span) => {
        let ready = restored
          ? await this.#fromHostDelta(task, workspace, restored.delta, agentEnv)
          : undefined;
        span.setAttribute('airlock.workspace.delta', ready ? 'host' : restored ? 'guest' : 'none');
        if (!ready) {
          for (const step of workspaceSteps(task, remote, REPO_DIR, restored !== undefined)) {
            await sh(step.what, { argv: step.argv, ...(step.cwd ? { cwd: step.cwd } : {}) }, 'internal');
          }
          const head = (await sh('git rev-parse', { argv: ['git', 'rev-parse', 'HEAD'] }, 'internal')).trim();
          const entries = await gitConfigEntries(workspace);
          if ('error' in entries)
            throw new TaskFailure('internal', `could not read the clone's git config: ${entries.error}`);
          ready = { head, cloned: entries };
        }
        for (const command of config.setup) {
          audit.append(task.id, 'task.setup', { command });
          await sh(`setup command \`${command}\``, { argv: ['bash', '-lc', command] }, 'setup_failed');
        }
        return { base: ready.head, cloned: ready.cloned };
      },
    );

    const branchDiff =
      task.start.from === 'own_branch'
        ? await sh(
            'git diff --stat',
            runnerGit(workspace, [
              'diff',
              '--no-ext-diff',
              '--no-textconv',
              '--stat',
              'refs/remotes/origin/HEAD...HEAD',
            ]),
            'internal',
          ).catch(() => undefined)
        : undefined;
    const prompt = await recordTaskPrompt(this.#deps, task, branchDiff);
    await vm.writeFile(PROMPT_FILE, prompt.text, { mode: 0o644, uid: AGENT_UID });
    const summary = await inSpan(
      this.#deps.tracer,
      'agent.run',
      { attributes: { 'airlock.agent': config.agent } },
      () => this.#runAgent(task, config, vm, agentEnv, prompt.text, signal),
    );

    // The agent has exited and its processes are gone: from here on, git runs nothing it left.
    const reset = await resetGitMetadata(workspace, cloned.entries);
    if (reset.config.length || reset.removed.length || reset.configUnreadable)
      audit.append(task.id, 'git.metadata_reset', { ...reset });
    const bot = `${this.#deps.app.slug()}[bot]`;
    const message = [
      `airlock: ${task.issueNumber !== null ? `#${task.issueNumber} ` : ''}${task.context.issueTitle ?? `task ${task.id}`}`,
      '',
      `Task ${task.id}, requested by @${task.actorLogin}. Audit record: task ${task.id}.`,
      '',
      `Co-authored-by: ${coAuthor(task)}`,
    ].join('\n');
    const commit = await commitWorkspace(workspace, {
      base,
      name: bot,
      email: `${bot}@users.noreply.github.com`,
      message,
    });
    if (!commit) return { outcome: 'no_changes', summary };
    const { head, stat: diffStat, patch } = commit;
    audit.append(task.id, 'git.diff', { base, head, stat: diffStat, patch });

    await ctx.enterPhase('pushing');
    await inSpan(this.#deps.tracer, 'git.push', { attributes: { 'airlock.push.by': 'guest' } }, () =>
      pushWorkspace(workspace, remote, task.branch),
    );
    if (!pushed.head) {
      throw new TaskFailure(
        'push_refused',
        pushed.held
          ? `the proxy held no update of ${task.branch}, so there is nothing to approve`
          : `the proxy forwarded no update of ${task.branch}, so nothing reached GitHub`,
      );
    }
    if (pushed.head !== head)
      audit.append(task.id, 'git.head_mismatch', { guest: head, forwarded: pushed.head });
    return {
      outcome: pushed.held ? 'changes_held' : 'changes_pushed',
      headSha: pushed.head,
      summary,
      diffStat: diffStat.trim(),
    };
  }

  /**
   * Brings a restored workspace to its start point from the delta the host prepared; undefined
   * (with the reason recorded) when the guest is to fetch instead.
   */
  async #fromHostDelta(
    task: Task,
    workspace: Workspace,
    delta: Promise<HostDelta | { fallback: string }> | undefined,
    env: Record<string, string>,
  ): Promise<PreparedWorkspace | undefined> {
    const { audit } = this.#deps;
    const guestFetches = (reason: string) => {
      audit.append(task.id, 'workspace.delta', { path: 'guest_fetch', reason });
      return undefined;
    };
    const host = delta
      ? await deltaWithin(delta, DELTA_WAIT_MS)
      : { fallback: 'this airlock keeps no git mirrors' };
    if ('fallback' in host) return guestFetches(host.fallback);
    const applied = await applyHostDelta(workspace, host, env);
    if ('fallback' in applied) return guestFetches(applied.fallback);
    const { plan, pack } = host;
    audit.append(task.id, 'workspace.delta', {
      path: 'host_mirror',
      start: { ref: plan.checkoutFrom, sha: plan.startSha },
      head: applied.head,
      refs: plan.counts,
      pack: pack ? { name: pack.name, objects: pack.objects, bytes: pack.pack.length } : null,
    });
    return applied;
  }

  async #runAgent(
    task: Task,
    config: RepoConfig,
    vm: Vm,
    env: Record<string, string>,
    prompt: string,
    signal: AbortSignal,
  ): Promise<string> {
    const { audit } = this.#deps;
    const adapter = agentAdapter(config.agent);
    const version = adapter.npmPackage ? this.#deps.sandbox.agentPackages[adapter.npmPackage] : undefined;
    audit.append(task.id, 'agent.info', {
      agent: adapter.name,
      ...(version ? { version } : {}),
      ...(config.model ? { model: config.model } : {}),
      ...(adapter.name === 'script' ? { script: config.script } : {}),
    });
    let result: AgentRunResult;
    try {
      result = await runAgent(
        vm,
        adapter,
        {
          prompt,
          promptFile: PROMPT_FILE,
          repoDir: REPO_DIR,
          homeDir: env.HOME ?? '/home/agent',
          proxyUrl: PROXY,
          taskId: task.id,
          ...(config.model ? { model: config.model } : {}),
          ...(config.script ? { script: config.script } : {}),
        },
        { uid: AGENT_UID, env, signal, onEvent: (event) => audit.append(task.id, 'agent.event', event) },
      );
    } catch (error) {
      if (error instanceof AgentConfigError)
        throw new TaskFailure('setup_failed', error.message, { cause: error });
      throw error;
    }
    trace.getActiveSpan()?.setAttributes({
      'airlock.agent.exit_code': result.exitCode ?? -1,
      'airlock.agent.events': result.events,
    });
    audit.append(task.id, 'agent.exit', {
      code: result.exitCode,
      signal: result.signal,
      durationMs: result.durationMs,
      events: result.events,
    });
    if (result.leftovers.length)
      audit.append(task.id, 'agent.leftovers_killed', { processes: result.leftovers });
    if (result.exitCode !== 0) {
      throw new TaskFailure(
        'agent_failed',
        `the ${adapter.name} agent exited with ${result.exitCode ?? result.signal}: ${result.failure}`,
      );
    }
    return result.summary;
  }
}

/**
 * Builds a task's prompt from the thread as it was approved (see promptThread) and records it: the
 * prompt as sent, and what changed in the thread since the trigger, if anything did.
 */
export async function recordTaskPrompt(
  deps: Pick<VmTaskRunnerDeps, 'audit' | 'promptThread' | 'earlierTasks'>,
  task: Task,
  branchDiff?: string,
): Promise<{ text: string; truncated: boolean }> {
  const thread = await deps.promptThread(task);
  if (thread && (thread.editedAfterTrigger || thread.laterComments.length || thread.leftOut.length)) {
    deps.audit.append(task.id, 'task.thread_changed', {
      editedAfterTrigger: thread.editedAfterTrigger,
      laterComments: thread.laterComments,
      leftOut: thread.leftOut,
    });
  }
  const prompt = taskPrompt(task, thread?.thread, await deps.earlierTasks(task), branchDiff);
  deps.audit.append(task.id, 'task.prompt', { text: prompt.text, truncated: prompt.truncated });
  return prompt;
}

/** The repository as the workspace names it: through the task's proxy. */
function remoteOf(owner: string, repo: string): string {
  return `${PROXY}/git/${owner}/${repo}.git`;
}

/** The person who asked, as a commit trailer: their GitHub noreply address, or local mode's identity. */
function coAuthor(task: Task): string {
  if (task.context.local) return task.context.local.coAuthor;
  return `${task.actorLogin} <${task.actorId ? `${task.actorId}+` : ''}${task.actorLogin}@users.noreply.github.com>`;
}
