import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { MODEL_FEATURE_NAMES } from '../proxy/model-features.ts';

/** Path of the per-repository configuration file. */
export const REPO_CONFIG_PATH = '.github/airlock.yml';

const hostName = z
  .string()
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i, {
    message: 'must be a host name such as registry.example.com or *.example.com (no scheme, port or path)',
  })
  .transform((h) => h.toLowerCase());

/** Lock files that key an environment when `key_files` is unset (matched at any depth). */
export const DEFAULT_KEY_FILES = [
  'package-lock.json',
  'npm-shrinkwrap.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'bun.lockb',
  'bun.lock',
  'requirements*.txt',
  'poetry.lock',
  'uv.lock',
  'Pipfile.lock',
  'go.sum',
  'Cargo.lock',
  'Gemfile.lock',
  'composer.lock',
  'mix.lock',
  'gradle.lockfile',
  'packages.lock.json',
].map((name) => `**/${name}`);

/** How old an environment may get, as `<n>h` or `<n>d`. */
const MaxAge = z
  .string()
  .regex(/^[1-9][0-9]{0,3}[hd]$/, { message: 'must be a number of hours or days, such as 12h or 7d' });

const debianPackage = z.string().regex(/^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$/, {
  message: 'must be a Debian package name, optionally pinned as name=version',
});

const keyFilePattern = z
  .string()
  .min(1)
  .max(300)
  .refine((p) => !p.startsWith('/') && !p.split('/').includes('..'), {
    message: 'must be a path or glob inside the repository (no leading / and no ..)',
  });

/** The `environment:` section: what is built once into the repository's golden VM. */
export const Environment = z
  .object({
    packages: z
      .array(debianPackage)
      .max(200)
      .default([])
      .describe(
        'Debian packages installed as root while the environment is built, from the Debian archive the host is configured with.',
      ),
    setup: z
      .array(z.string().min(1).max(2000))
      .max(20)
      .default([])
      .describe(
        'Shell commands run as the agent user in the cloned workspace while the environment is built (npm ci, pip install -r requirements.txt, go mod download, ...); egress only through the allowlist.',
      ),
    key_files: z
      .array(keyFilePattern)
      .max(50)
      .optional()
      .describe(
        `Files (paths or globs such as **/package.json) whose content keys the environment: a change to one on the default branch rebuilds it. Default: the lock files present (${DEFAULT_KEY_FILES.map((p) => p.slice(3)).join(', ')}).`,
      ),
    max_age: MaxAge.default('7d').describe(
      'How old the environment may get before it is rebuilt (the old one keeps serving until then), as 12h or 7d.',
    ),
  })
  .strict();
export type Environment = z.infer<typeof Environment>;

/** An environment's `max_age` in milliseconds. */
export function maxAgeMs(maxAge: string): number {
  const n = Number(maxAge.slice(0, -1));
  return n * (maxAge.endsWith('d') ? 24 : 1) * 3600_000;
}

/**
 * Per-repository settings from .github/airlock.yml. Every field is optional; a missing file means
 * all defaults. Unknown keys are errors, so a typo is reported instead of silently ignored.
 */
export const RepoConfig = z
  .object({
    label: z.string().min(1).max(50).default('airlock').describe('The issue label that starts a task.'),
    agent: z
      .enum(['claude', 'codex', 'opencode', 'script'])
      .default('claude')
      .describe('Which agent CLI runs in the VM.'),
    model: z
      .string()
      .min(1)
      .max(100)
      .optional()
      .describe("Model name passed to the agent CLI; the agent's default when unset."),
    script: z
      .string()
      .min(1)
      .max(300)
      .optional()
      .describe(
        'For agent: script, the path of the script inside the repository, run with the prompt on stdin.',
      ),
    setup: z
      .array(z.string().min(1).max(2000))
      .max(20)
      .default([])
      .describe(
        "Shell commands run as the agent user in each task's workspace before the agent (after the environment is restored, when one is configured; egress only through the allowlist).",
      ),
    environment: Environment.optional().describe(
      "The repository's environment: toolchain and dependencies installed once into a golden VM that every task restores from. Unset: tasks boot the base image and clone.",
    ),
    timeout_minutes: z
      .number()
      .int()
      .min(1)
      .max(360)
      .default(30)
      .describe('Wall-clock limit for one task, in minutes.'),
    limits: z
      .object({
        cpus: z.number().int().min(1).max(16).default(2).describe('vCPUs of the task VM.'),
        memory_mib: z.number().int().min(256).max(32768).default(2048).describe('Guest memory, in MiB.'),
        disk_mib: z
          .number()
          .int()
          .min(512)
          .max(200_000)
          .default(8192)
          .describe('Writable disk (overlay), in MiB.'),
        output_kib: z
          .number()
          .int()
          .min(64)
          .max(1_048_576)
          .default(16_384)
          .describe('Cap on agent output streamed to the host, in KiB.'),
      })
      .strict()
      .prefault({})
      .describe('VM resources for one task.'),
    budget: z
      .object({
        max_tokens: z.number().int().positive().default(2_000_000).describe('Input plus output tokens.'),
      })
      .strict()
      .prefault({})
      .describe('Model token budget per task; the task stops when it is exceeded.'),
    egress: z
      .object({
        allow: z
          .array(hostName)
          .max(100)
          .default([])
          .describe(
            'Host names (or *.domain wildcards) the VM may reach, e.g. a package registry for setup.',
          ),
      })
      .strict()
      .prefault({})
      .describe('Egress beyond git and the model API; everything else is refused.'),
    models: z
      .object({
        allow: z
          .array(z.enum(MODEL_FEATURE_NAMES))
          .max(MODEL_FEATURE_NAMES.length)
          .default([])
          .describe(
            `Model API features that make the provider reach beyond the egress allowlist, allowed by name; each also needs the operator's permission. One of: ${MODEL_FEATURE_NAMES.join(', ')}.`,
          ),
      })
      .strict()
      .prefault({})
      .describe(
        'What the model API may do on the task’s behalf; by default it fetches nothing and calls no remote tool.',
      ),
    ci: z
      .object({
        autofix: z.boolean().default(false).describe('Start a follow-up task when a check fails.'),
        max_attempts: z
          .number()
          .int()
          .min(0)
          .max(10)
          .default(2)
          .describe('Follow-up attempts per PR for CI failures.'),
        ready_for_review: z
          .boolean()
          .default(true)
          .describe('Mark the draft PR ready for review when every check passes.'),
        request_reviewer: z
          .boolean()
          .default(true)
          .describe('Request a review from the person who asked, once CI passes.'),
      })
      .strict()
      .prefault({})
      .describe('What happens when CI reports on an agent branch.'),
    allow_forks: z
      .boolean()
      .default(false)
      .describe('Allow triggers from pull requests whose head is a fork.'),
    approval: z
      .object({
        before_run: z
          .enum(['never', 'untrusted', 'always'])
          .default('untrusted')
          .describe(
            'When a task waits for a person with write access to approve it before it runs: `untrusted` when the text the agent would read (issue or pull request body, comments) was written by someone without write access, `always`, or `never`.',
          ),
        before_push: z
          .enum(['never', 'always'])
          .default('never')
          .describe(
            'With `always`, nothing the agent wrote reaches GitHub (so no CI runs it) until a person with write access approves the held result.',
          ),
        separate_approver: z
          .boolean()
          .default(false)
          .describe('Require the approver to be someone other than the person who asked for the task.'),
        expire_hours: z
          .number()
          .int()
          .min(1)
          .max(720)
          .default(72)
          .describe('How long a task waits for approval before it ends unapproved, in hours.'),
      })
      .strict()
      .prefault({})
      .describe('Which tasks wait for a person to approve them, before they run and before they push.'),
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

/**
 * The label a repository's file names, read leniently so an invalid file still says which label
 * it meant (a refusal is posted only where that label was used); `airlock` when it names none.
 */
export function configuredLabel(text: string | undefined): string {
  try {
    const raw = text ? (parseYaml(text) as unknown) : undefined;
    const label = (raw as { label?: unknown } | null | undefined)?.label;
    return typeof label === 'string' && label.length > 0 ? label : DEFAULT_REPO_CONFIG.label;
  } catch {
    // Not YAML at all: the file cannot name a label, so the default one is the one that counts.
    return DEFAULT_REPO_CONFIG.label;
  }
}

/** JSON Schema for editors, generated from {@link RepoConfig}. */
export function repoConfigJsonSchema(): unknown {
  return z.toJSONSchema(RepoConfig, { io: 'input', target: 'draft-7' });
}

function errorLine(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
