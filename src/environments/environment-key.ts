import { createHash } from 'node:crypto';
import path from 'node:path';
import { canonicalJson } from '../audit/audit-event.ts';
import { DEFAULT_KEY_FILES, REPO_CONFIG_PATH, type RepoConfig } from '../config/repo-config.ts';

/** A repository's config with its `environment:` section set. */
export type EnvironmentConfig = RepoConfig & { environment: NonNullable<RepoConfig['environment']> };

/** Whether a repository's config asks for an environment. */
export function hasEnvironment(config: RepoConfig): config is EnvironmentConfig {
  return config.environment !== undefined;
}

/** The key-file patterns of a config: its `key_files`, or the default lock files. */
export function keyFilePatterns(config: EnvironmentConfig): readonly string[] {
  return config.environment.key_files ?? DEFAULT_KEY_FILES;
}

/**
 * The digest of everything apart from the key files that makes one environment differ from
 * another: the image it is built on, the packages and setup commands, the key-file patterns, the
 * hosts setup may reach, and the VM shape the snapshot is frozen at (a restore has that shape).
 */
export function environmentSpecHash(config: EnvironmentConfig, imageDigest: string): string {
  const { packages, setup } = config.environment;
  return sha256(
    canonicalJson({
      image: imageDigest,
      packages,
      setup,
      keyFiles: keyFilePatterns(config),
      egress: config.egress.allow,
      shape: {
        cpus: config.limits.cpus,
        memoryMib: config.limits.memory_mib,
        diskMib: config.limits.disk_mib,
      },
    }),
  );
}

/** A key file as git stores it: its path and its blob id (a digest of its content). */
export interface KeyFile {
  path: string;
  blob: string;
}

/** The environment's key: its spec and the content of its key files (order does not matter). */
export function environmentKey(specHash: string, files: readonly KeyFile[]): string {
  const sorted = [...files].sort((a, b) => a.path.localeCompare(b.path));
  return sha256(canonicalJson({ spec: specHash, files: sorted.map((f) => [f.path, f.blob]) }));
}

/** git pathspecs that select the key files (glob magic: `**` crosses directories). */
export function keyFilePathspecs(config: EnvironmentConfig): string[] {
  return keyFilePatterns(config).map((pattern) => `:(glob)${pattern}`);
}

/** Reads `git ls-files -s` output into key files; throws on a line it does not understand. */
export function parseLsFiles(output: string): KeyFile[] {
  const files: KeyFile[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    const match = /^[0-7]{6} ([0-9a-f]{40,64}) [0-3]\t(.+)$/.exec(line);
    if (!match) throw new Error(`unexpected git ls-files line: ${line.slice(0, 200)}`);
    files.push({ blob: match[1]!, path: match[2]! });
  }
  return files;
}

/**
 * Whether a change to these paths (a push to the default branch) can change the environment: a key
 * file, or the repository's airlock config (which holds the packages and setup).
 */
export function touchesEnvironment(config: EnvironmentConfig, paths: Iterable<string>): boolean {
  const patterns = keyFilePatterns(config);
  for (const file of paths) {
    if (file === REPO_CONFIG_PATH) return true;
    if (patterns.some((pattern) => path.posix.matchesGlob(file, pattern))) return true;
  }
  return false;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
