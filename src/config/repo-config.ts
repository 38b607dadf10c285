import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

/** Path of the per-repository configuration file. */
export const REPO_CONFIG_PATH = '.github/airlock.yml';

const hostName = z
  .string()
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i, {
    message: 'must be a host name such as registry.example.com or *.example.com (no scheme, port or path)',
  })
  .transform((h) => h.toLowerCase());

/**
 * Per-repository settings from .github/airlock.yml. Every field is optional; a missing file means
 * all defaults. Unknown keys are errors, so a typo is reported instead of silently ignored.
 */
export const RepoConfig = z
  .object({
    /** The issue label that starts a task. */
    label: z.string().min(1).max(50).default('airlock'),
    /** Which agent CLI runs in the VM. */
    agent: z.enum(['claude', 'codex', 'opencode', 'script']).default('claude'),
    /** Model name passed to the agent CLI; the agent's default when unset. */
    model: z.string().min(1).max(100).optional(),
    /** For agent: script, the path of the script inside the repository, run with the prompt on stdin. */
    script: z.string().min(1).max(300).optional(),
    /** Shell commands run in the workspace before the agent (egress only through the allowlist). */
    setup: z.array(z.string().min(1).max(2000)).max(20).default([]),
    /** Wall-clock limit for one task, in minutes. */
    timeout_minutes: z.number().int().min(1).max(360).default(30),
    /** VM resources for one task. */
    limits: z
      .object({
        cpus: z.number().int().min(1).max(16).default(2),
        memory_mib: z.number().int().min(256).max(32768).default(2048),
        disk_mib: z.number().int().min(512).max(200_000).default(8192),
        /** Cap on agent output streamed to the host, in KiB. */
        output_kib: z.number().int().min(64).max(1_048_576).default(16_384),
      })
      .strict()
      .prefault({}),
    /** Model token budget per task (input + output); the task stops when exceeded. */
    budget: z
      .object({ max_tokens: z.number().int().positive().default(2_000_000) })
      .strict()
      .prefault({}),
    /** Extra host names the VM may reach through the egress proxy (for example a package registry). */
    egress: z
      .object({ allow: z.array(hostName).max(100).default([]) })
      .strict()
      .prefault({}),
    /** What happens when CI reports on an agent branch. */
    ci: z
      .object({
        /** Start a follow-up task when a check fails. */
        autofix: z.boolean().default(false),
        /** Follow-up attempts per PR for CI failures. */
        max_attempts: z.number().int().min(0).max(10).default(2),
        /** Mark the draft PR ready for review when every check passes. */
        ready_for_review: z.boolean().default(true),
        /** Request a review from the person who asked, once CI passes. */
        request_reviewer: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    /** Allow triggers from pull requests whose head is a fork. */
    allow_forks: z.boolean().default(false),
  })
  .strict();
export type RepoConfig = z.infer<typeof RepoConfig>;

/** The configuration used when a repository has no .github/airlock.yml. */
export const DEFAULT_REPO_CONFIG: RepoConfig = RepoConfig.parse({});

/** Parses .github/airlock.yml text; throws a ConfigError that names each bad field. */
export function parseRepoConfig(text: string | undefined): RepoConfig {
  if (text === undefined || text.trim() === '') return DEFAULT_REPO_CONFIG;
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (cause) {
    throw new ConfigError(`${REPO_CONFIG_PATH} is not valid YAML`, [errorLine(cause)], { cause });
  }
  if (raw === null || raw === undefined) return DEFAULT_REPO_CONFIG;
  const parsed = RepoConfig.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => {
      const field = issue.path.length ? issue.path.join('.') : '(top level)';
      return `\`${field}\`: ${issue.message}`;
    });
    throw new ConfigError(`${REPO_CONFIG_PATH} is invalid`, issues);
  }
  return parsed.data;
}

/** JSON Schema for editors, generated from {@link RepoConfig}. */
export function repoConfigJsonSchema(): unknown {
  return z.toJSONSchema(RepoConfig, { io: 'input', target: 'draft-7' });
}

function errorLine(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
