import type { AuditSink } from '../audit-sink.ts';
import type { Logger } from '../logger.ts';
import type { VmSnapshot } from '../sandbox/sandbox.ts';
import type { EnvironmentConfig } from './environment-key.ts';
import type { EnvironmentBuild } from './environment-store.ts';
import type { WorkspaceRefs } from './workspace-refs.ts';

/** What a builder is given for one build. */
export interface BuildRequest {
  build: EnvironmentBuild;
  config: EnvironmentConfig;
  /** Where the snapshot is to be made: absent now, complete when `build` resolves. */
  dir: string;
  /** Aborted when airlock stops; the build then ends and leaves nothing behind. */
  signal: AbortSignal;
  /** The build's own record (the build id is the chain's subject). */
  audit: AuditSink;
  log: Logger;
  /** Build output for the build's log (commands and what they printed). */
  output(text: string): void;
  /** Called once the build knows its source commit and key (before setup runs); resolves once recorded. */
  source(source: BuiltSource): Promise<void>;
}

/** Where an environment came from. */
export interface BuiltSource {
  commitSha: string;
  /** environmentSpecHash of the build's config and image. */
  specHash: string;
  /** environmentKey: the spec plus the key files' content at `commitSha`. */
  envKey: string;
  /** The workspace's refs as cloned (absent when they could not be read): see WorkspaceRefs. */
  workspaceRefs?: WorkspaceRefs;
}

/**
 * Builds one environment: its packages and setup into a VM, frozen into a snapshot directory. The
 * product's builder boots a microVM (VmEnvironmentBuilder); control-plane tests pass a double.
 */
export interface EnvironmentBuilder {
  /** The VM image environments are built on (part of every environment's spec). */
  readonly imageDigest: string;
  build(request: BuildRequest): Promise<BuiltSource>;
  /** A snapshot made earlier, or undefined when it no longer restores here (another image, QEMU or host). */
  open(dir: string): Promise<VmSnapshot | undefined>;
  /** An environment no longer serves (superseded, or about to be deleted): drop what is kept warm for it. */
  retire(dir: string): Promise<void>;
}
