import path from 'node:path';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { TaskCredential } from '../github/task-token.ts';
import type { DebianSource } from '../proxy/debian-sources.ts';
import { startTaskProxy, type TaskProxy } from '../proxy/task-proxy.ts';
import { installDebianPackages } from '../sandbox/guest-apt.ts';
import { GUEST_PROXY_ADDRESS } from '../sandbox/qemu-args.ts';
import type { GuestExec, Sandbox, Vm, VmSnapshot } from '../sandbox/sandbox.ts';
import { splitRepo } from '../tasks/task.ts';
import type { BuildRequest, BuiltSource, EnvironmentBuilder } from './environment-builder.ts';
import {
  type EnvironmentConfig,
  environmentKey,
  environmentSpecHash,
  keyFilePathspecs,
  parseLsFiles,
} from './environment-key.ts';
import type { EnvironmentBuild } from './environment-store.ts';
import { FOR_EACH_REF_FORMAT, parseWorkspaceRefs } from './workspace-refs.ts';

/** The workspace, where the task runner expects it after a restore. */
export const WORKSPACE_DIR = '/work/repo';
export const AGENT_UID = 1000;
const PROXY = `http://${GUEST_PROXY_ADDRESS}`;
/** How long teardown waits for the guest's last exec records. */
const AUDIT_SYNC_TIMEOUT_MS = 5_000;
/** Output streamed from a build's commands, at most (`npm ci` and apt are chatty). */
const BUILD_OUTPUT_LIMIT_BYTES = 64 * 1024 * 1024;

/** What the VM builder needs from the rest of airlock. */
export interface VmEnvironmentBuilderDeps {
  sandbox: Pick<Sandbox, 'imageDigest' | 'create' | 'freeze' | 'openSnapshot' | 'drainWarmPool'>;
  dataDir: string;
  /** Upstream smart-HTTP URL of a repository. */
  gitUrl(owner: string, name: string): string;
  /** The credential the build's read-only git proxy uses upstream. */
  credentialFor(build: EnvironmentBuild): TaskCredential;
  /**
   * The Debian archives `packages:` are installed from, through the build proxy's Debian route
   * (AIRLOCK_DEBIAN_SOURCES, else the host's own apt sources); read when a build has packages.
   */
  debianArchives(): readonly DebianSource[];
}

/**
 * Builds an environment in a microVM: boots the base image with only the build's own proxy
 * reachable (git read-only, no model API, egress through the repository's allowlist), clones the
 * default branch as the agent user, keys the environment by its key files, installs the Debian
 * packages as root, runs the environment's setup as the agent user, stops whatever setup left
 * running, and freezes the VM with its guest agent idle. Whatever happens the VM and proxy go.
 */
export class VmEnvironmentBuilder implements EnvironmentBuilder {
  readonly #deps: VmEnvironmentBuilderDeps;

  constructor(deps: VmEnvironmentBuilderDeps) {
    this.#deps = deps;
  }

  get imageDigest(): string {
    return this.#deps.sandbox.imageDigest;
  }

  open(dir: string): Promise<VmSnapshot | undefined> {
    return this.#deps.sandbox.openSnapshot(dir);
  }

  async retire(dir: string): Promise<void> {
    const snapshot = await this.#deps.sandbox.openSnapshot(dir);
    if (snapshot) await this.#deps.sandbox.drainWarmPool(snapshot);
  }

  async build(request: BuildRequest): Promise<BuiltSource> {
    const { build, config, audit, signal } = request;
    const { owner, repo } = splitRepo(build.repoFullName);
    let proxy: TaskProxy | undefined;
    let vm: Vm | undefined;
    try {
      proxy = await startTaskProxy({
        taskId: build.id,
        repository: { owner, name: repo },
        branch: null,
        listen: { socketPath: path.join(this.#deps.dataDir, 'proxy', build.id, 'proxy.sock') },
        gitUrl: this.#deps.gitUrl,
        credential: this.#deps.credentialFor(build),
        models: {},
        egressAllow: config.egress.allow,
        ...(config.environment.packages.length ? { debianArchives: this.#deps.debianArchives() } : {}),
        budgetTokens: 0,
        onBudgetExceeded: () => {},
        audit,
        log: request.log,
      });
      const { limits } = config;
      vm = await this.#deps.sandbox.create(
        {
          taskId: build.id,
          cpus: limits.cpus,
          memoryMib: limits.memory_mib,
          diskMib: limits.disk_mib,
          proxySocket: proxy.address,
          outputLimitBytes: BUILD_OUTPUT_LIMIT_BYTES,
          from: 'cold',
          freezable: true,
        },
        signal,
      );
      audit.append(build.id, 'vm.created', {
        id: vm.id,
        image: this.imageDigest,
        accelerator: vm.accel,
        bootMs: Math.round(vm.bootMs),
        ...(vm.queuedMs !== undefined ? { queuedMs: Math.round(vm.queuedMs) } : {}),
        limits,
      });
      recordVm(vm, build.id, audit);
      const source = await this.#prepare(vm, request, `${PROXY}/git/${owner}/${repo}.git`);
      // Frozen with the guest agent idle: nothing setup started may keep running into every task.
      const leftovers = await vm.killUserProcesses(AGENT_UID);
      if (leftovers.length) audit.append(build.id, 'build.leftovers_killed', { processes: leftovers });
      await vm.syncAudit(AUDIT_SYNC_TIMEOUT_MS);
      const snapshot = await this.#deps.sandbox.freeze(vm, request.dir);
      vm = undefined;
      audit.append(build.id, 'vm.frozen', { dir: snapshot.dir, key: snapshot.key, shape: snapshot.shape });
      return source;
    } finally {
      if (vm) {
        const checked = await vm.destroy().catch((e) => {
          request.log.error({ err: errorMessage(e) }, 'build VM teardown failed');
          return { processGone: false, overlayDeleted: false };
        });
        audit.append(build.id, 'cleanup.vm', { vm: vm.id, ...checked });
      }
      if (proxy) audit.append(build.id, 'cleanup.proxy', { ...(await proxy.close()) });
    }
  }

  async #prepare(vm: Vm, request: BuildRequest, remote: string): Promise<BuiltSource> {
    const { build, config, audit } = request;
    const env = {
      HOME: '/home/agent',
      GIT_TERMINAL_PROMPT: '0',
      HTTP_PROXY: `${PROXY}:80`,
      HTTPS_PROXY: `${PROXY}:80`,
      http_proxy: `${PROXY}:80`,
      https_proxy: `${PROXY}:80`,
      NO_PROXY: GUEST_PROXY_ADDRESS,
    };
    const sh = async (what: string, exec: GuestExec): Promise<string> => {
      request.output(`$ ${what}\n`);
      let output = '';
      const result = await vm.exec(
        { uid: AGENT_UID, cwd: WORKSPACE_DIR, ...exec, env: { ...env, ...exec.env } },
        (_stream, data) => {
          output = (output + data).slice(-64 * 1024);
          request.output(data);
        },
        request.signal,
      );
      audit.append(build.id, 'build.step', {
        command: what,
        exit: result.code,
        signal: result.signal,
        durationMs: Math.round(result.durationMs),
      });
      if (result.code !== 0)
        throw new Error(
          `${what} failed (exit ${result.code ?? result.signal}): ${output.trim().split('\n').slice(-8).join('\n')}`,
        );
      return output;
    };

    await sh('git clone', { argv: ['git', 'clone', '--quiet', remote, WORKSPACE_DIR], cwd: '/work' });
    // Read before any of the repository's own code has run: the key is what git cloned, and the
    // refs are what every restored task's workspace is brought up to date from.
    const [commitSha = '', head = ''] = (
      await sh('git rev-parse HEAD', { argv: ['git', 'rev-parse', 'HEAD', '--symbolic-full-name', 'HEAD'] })
    ).split('\n');
    const refs = await sh('git for-each-ref', {
      argv: ['git', 'for-each-ref', `--format=${FOR_EACH_REF_FORMAT}`],
    });
    const workspaceRefs = parseWorkspaceRefs(head, refs);
    const listed = await sh('git ls-files (key files)', {
      argv: ['git', 'ls-files', '-s', '--', ...keyFilePathspecs(config)],
    });
    const keyFiles = parseLsFiles(listed);
    const specHash = environmentSpecHash(config, this.imageDigest);
    const source = {
      commitSha,
      specHash,
      envKey: environmentKey(specHash, keyFiles),
      ...(workspaceRefs ? { workspaceRefs } : {}),
    };
    audit.append(build.id, 'build.source', { ...source, keyFiles });
    await request.source(source);

    const { packages, setup } = config.environment;
    if (packages.length) {
      audit.append(build.id, 'build.packages', { packages });
      request.output(`$ apt-get install ${packages.join(' ')}\n`);
      await installDebianPackages(vm, this.#deps.debianArchives(), packages, {
        onOutput: (_stream, data) => request.output(data),
        signal: request.signal,
      });
    }
    for (const command of setup) {
      audit.append(build.id, 'build.setup', { command });
      await sh(`setup \`${command}\``, { argv: ['bash', '-lc', command] });
    }
    return source;
  }
}

/** Exec audit, losses and unreadable lines of a build's VM, into the build's record. */
function recordVm(vm: Vm, buildId: string, audit: AuditSink): void {
  vm.onExecAudit((record) => audit.append(buildId, 'vm.exec', { ...record }));
  vm.onExecAuditLoss(({ kind, ...loss }) =>
    audit.append(buildId, kind === 'dropped' ? 'vm.exec.dropped' : 'vm.exec_audit_gap', loss),
  );
  vm.onMalformed((line, error) => audit.append(buildId, 'vm.malformed_output', { line, error }));
}

/** The config a build runs with (its environment section set). */
export type { EnvironmentConfig };
