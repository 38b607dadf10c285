import { z } from 'zod';

/** Agents a repository can name in `.github/airlock.yml` (kept in step with RepoConfig's `agent`). */
const AGENTS = ['claude', 'codex', 'opencode', 'script'] as const;

/**
 * Built-in caps, used when neither the policy file nor an `AIRLOCK_MAX_*` variable sets one. Sized
 * so that two tasks (AIRLOCK_MAX_CONCURRENT_TASKS' default) at the cap fit on one host of 8 cores
 * and 32 GiB with room left for the control plane, and so that every repository default (2 CPUs,
 * 2 GiB, 8 GiB of disk, 30 minutes, 2,000,000 tokens) stays well inside them.
 */
export const BUILT_IN_CAPS = {
  max_tokens: 10_000_000,
  timeout_minutes: 120,
  cpus: 4,
  memory_mib: 8192,
  disk_mib: 32_768,
} as const;

const cap = (name: keyof typeof BUILT_IN_CAPS, what: string) =>
  z.number().int().positive().describe(`${what} Built in: ${BUILT_IN_CAPS[name]}.`);

const modelPattern = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9*._:/@-]+$/, {
    message: 'must be a model name, with * standing for any run of characters (e.g. claude-sonnet-*)',
  });

const egressPattern = z
  .string()
  .regex(/^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+)$/i, {
    message:
      'must be *, a host name such as registry.example.com, or *.example.com (no scheme, port or path)',
  })
  .transform((h) => h.toLowerCase());

const featureName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*$/, { message: 'must be a feature name such as web_search' });

const secretName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, { message: 'must be a secret name such as npm-private' });

const BEFORE_RUN = ['never', 'untrusted', 'always'] as const;
const BEFORE_PUSH = ['never', 'always'] as const;

/** Each rule's schema and description, written once for `defaults` and the overrides. */
const rule = {
  agents: z.array(z.enum(AGENTS)).min(1).describe('Agents a repository may choose with `agent:`.'),
  models: {
    names: z
      .array(modelPattern)
      .min(1)
      .describe(
        'Model names a repository may choose with `model:`; `*` matches any run of characters. A repository that names no model gets its agent’s default.',
      ),
    features: z
      .array(featureName)
      .describe(
        'Model features a repository may enable with `models.allow:` (e.g. web_search); each lets the provider reach the network for the agent.',
      ),
  },
  caps: {
    max_tokens: cap(
      'max_tokens',
      'The largest `budget.max_tokens` a repository may ask for (input plus output tokens).',
    ),
    timeout_minutes: cap('timeout_minutes', 'The largest `timeout_minutes` a repository may ask for.'),
    cpus: cap('cpus', 'The most vCPUs (`limits.cpus`) a repository may ask for.'),
    memory_mib: cap(
      'memory_mib',
      'The most guest memory (`limits.memory_mib`, MiB) a repository may ask for.',
    ),
    disk_mib: cap('disk_mib', 'The most writable disk (`limits.disk_mib`, MiB) a repository may ask for.'),
  },
  egress: {
    names: z
      .array(egressPattern)
      .describe(
        'Host names a repository may add to `egress.allow`: `*` (any), an exact name, or `*.example.com` (any name below it).',
      ),
  },
  approval: {
    min_before_run: z
      .enum(BEFORE_RUN)
      .describe('The lowest `approval.before_run` a repository may set (never < untrusted < always).'),
    min_before_push: z
      .enum(BEFORE_PUSH)
      .describe('The lowest `approval.before_push` a repository may set (never < always).'),
  },
  allow_forks: z.boolean().describe('Whether a repository may set `allow_forks: true`.'),
  spend: {
    repo_monthly_usd: z
      .number()
      .positive()
      .describe(
        'The most one repository’s tasks may spend on model calls in a calendar month (UTC), in US dollars at the `prices` table; a task is refused once it is reached. No cap when unset.',
      ),
    org_monthly_usd: z
      .number()
      .positive()
      .describe(
        'The most all repositories of one organisation (or user) together may spend in a calendar month (UTC), in US dollars; a task is refused once it is reached. No cap when unset.',
      ),
  },
  read_repositories: z
    .array(z.string().regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/, { message: 'must be owner/name' }))
    .describe(
      'Other repositories of the same owner (so the same installation) that this repository’s tasks may fetch through the git proxy, never push, with a read-only token scoped to them. Only in `orgs` and `repos` entries, naming repositories of that owner.',
    ),
  secrets: z
    .array(secretName)
    .describe(
      'Names of the `secrets` whose credentials the proxy adds to this repository’s requests to their hosts (its tasks and environment builds). The VM never holds them.',
    ),
};

/** One model's price, in US dollars per million tokens. */
const ModelPrice = z
  .object({
    input_usd_per_mtok: z
      .number()
      .nonnegative()
      .describe('US dollars per million input tokens (cache reads and writes included).'),
    output_usd_per_mtok: z.number().nonnegative().describe('US dollars per million output tokens.'),
  })
  .strict();
export type ModelPrice = z.infer<typeof ModelPrice>;

/** The monthly spend caps, each optional (no cap). */
const SpendRules = z
  .object({
    repo_monthly_usd: rule.spend.repo_monthly_usd.optional(),
    org_monthly_usd: rule.spend.org_monthly_usd.optional(),
  })
  .strict();

/** Caps as the file states them: each optional, unset ones inherited. */
const CapsRules = z
  .object({
    max_tokens: rule.caps.max_tokens.optional(),
    timeout_minutes: rule.caps.timeout_minutes.optional(),
    cpus: rule.caps.cpus.optional(),
    memory_mib: rule.caps.memory_mib.optional(),
    disk_mib: rule.caps.disk_mib.optional(),
  })
  .strict();

/** The rules as `defaults` holds them: every field present, built-in values when unset. */
const DefaultRules = z
  .object({
    agents: rule.agents.default([...AGENTS]),
    models: z
      .object({ names: rule.models.names.default(['*']), features: rule.models.features.default([]) })
      .strict()
      .prefault({})
      .describe('Which models and model features a repository may use.'),
    caps: CapsRules.prefault({}).describe(
      'The most a repository may ask for. Unset caps come from AIRLOCK_MAX_* variables, then the built-in caps.',
    ),
    egress: z
      .object({ names: rule.egress.names.default(['*']) })
      .strict()
      .prefault({})
      .describe('Egress a repository may add beyond git and the model API.'),
    approval: z
      .object({
        min_before_run: rule.approval.min_before_run.default('never'),
        min_before_push: rule.approval.min_before_push.default('never'),
      })
      .strict()
      .prefault({})
      .describe('The approval modes a repository may not go below.'),
    allow_forks: rule.allow_forks.default(true),
    spend: SpendRules.prefault({}).describe('Monthly caps on what model calls may cost.'),
    secrets: rule.secrets.default([]),
  })
  .strict();

/** The rules as an override holds them: every field optional, unset fields inherited. */
const OverrideRules = z
  .object({
    agents: rule.agents.optional(),
    models: z
      .object({ names: rule.models.names.optional(), features: rule.models.features.optional() })
      .strict()
      .optional()
      .describe('Which models and model features a repository may use.'),
    caps: CapsRules.optional().describe('The most a repository may ask for.'),
    egress: z
      .object({ names: rule.egress.names.optional() })
      .strict()
      .optional()
      .describe('Egress a repository may add beyond git and the model API.'),
    approval: z
      .object({
        min_before_run: rule.approval.min_before_run.optional(),
        min_before_push: rule.approval.min_before_push.optional(),
      })
      .strict()
      .optional()
      .describe('The approval modes a repository may not go below.'),
    allow_forks: rule.allow_forks.optional(),
    spend: SpendRules.optional().describe('Monthly caps on what model calls may cost.'),
    read_repositories: rule.read_repositories.optional(),
    secrets: rule.secrets.optional(),
  })
  .strict();
export type OverrideRules = z.infer<typeof OverrideRules>;

const orgName = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, {
  message: 'must be a GitHub organisation or user name',
});
const repoName = z.string().regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/, {
  message: 'must be a repository as owner/name',
});

const hostName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i, {
    message: 'must be one host name such as npm.corp.example (no scheme, port, path or wildcard)',
  })
  .transform((h) => h.toLowerCase());

/** Where a secret's value is read from: never written in the policy file itself. */
const SecretValue = z.union([
  z
    .object({
      env: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'must be an environment variable name' })
        .describe('The environment variable of the airlock process that holds the value.'),
    })
    .strict(),
  z
    .object({
      file: z
        .string()
        .startsWith('/', { message: 'must be an absolute path' })
        .describe('A file on the host that holds the value (trailing newline ignored), read at start.'),
    })
    .strict(),
]);

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const RESERVED_HEADERS = ['host', 'connection', 'content-length', 'transfer-encoding', 'proxy-authorization'];

/** A credential bound to one destination; the proxy adds it to requests to that host only. */
const DestinationSecretRule = z
  .object({
    host: hostName.describe('The one host the credential is sent to (exact name).'),
    port: z.number().int().min(1).max(65535).default(443).describe('The HTTPS port of that host.'),
    header: z
      .string()
      .regex(HEADER_NAME, { message: 'must be an HTTP header name' })
      .refine((h) => !RESERVED_HEADERS.includes(h.toLowerCase()), {
        message: `cannot be one of ${RESERVED_HEADERS.join(', ')}`,
      })
      .optional()
      .describe('Send the value in this header (e.g. Authorization, X-Api-Key).'),
    scheme: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9._-]*$/, { message: 'must be one word such as Bearer' })
      .optional()
      .describe('Put this word before the value in the header (e.g. Bearer, token).'),
    basic: z
      .object({
        username: z
          .string()
          .min(1)
          .regex(/^[^:]+$/, { message: 'cannot contain ":"' })
          .describe('The user name sent with the value as password.'),
      })
      .strict()
      .optional()
      .describe('Send HTTP Basic credentials: this user name, and the value as the password.'),
    value: SecretValue.describe('Where the value is read from: `{ env: NAME }` or `{ file: /path }`.'),
    ca_file: z
      .string()
      .startsWith('/', { message: 'must be an absolute path' })
      .optional()
      .describe(
        'PEM CA certificates to trust for this host’s own certificate, when it is not publicly trusted.',
      ),
  })
  .strict()
  .refine((s) => (s.header === undefined) !== (s.basic === undefined), {
    message: 'needs exactly one of `header:` and `basic:`',
  })
  .refine((s) => s.scheme === undefined || s.header !== undefined, {
    message: '`scheme:` goes with `header:` only',
  });
export type DestinationSecretRule = z.infer<typeof DestinationSecretRule>;

/**
 * The operator's policy file (`AIRLOCK_POLICY`): what any repository on this airlock may ask for.
 * `defaults` apply to every repository; `orgs` and `repos` override them field by field, the most
 * specific winning (a repository's entry over its organisation's over the defaults).
 */
export const OperatorPolicyFile = z
  .object({
    defaults: DefaultRules.prefault({}).describe('Rules for every repository.'),
    orgs: z
      .record(orgName, OverrideRules)
      .default({})
      .describe('Overrides for every repository of an organisation (or user), keyed by its name.'),
    repos: z
      .record(repoName, OverrideRules)
      .default({})
      .describe('Overrides for one repository, keyed by owner/name; these win over its organisation’s.'),
    prices: z
      .record(modelPattern, ModelPrice)
      .default({})
      .describe(
        'What model calls cost, keyed by model name (`*` matches any run of characters; the longest matching pattern wins). Calls to a model no entry matches are counted in tokens and cost nothing.',
      ),
    secrets: z
      .record(secretName, DestinationSecretRule)
      .default({})
      .describe(
        'Credentials bound to one destination each, keyed by a name that `secrets:` rules grant to repositories. The proxy adds them to requests to their host; values come from the environment or a file, never this file.',
      ),
  })
  .strict();
export type OperatorPolicyFile = z.infer<typeof OperatorPolicyFile>;

/** Every cap, in force: the policy file's, else an `AIRLOCK_MAX_*` variable's, else built in. */
export type PolicyCaps = { -readonly [K in keyof typeof BUILT_IN_CAPS]: number };

/** The rules for one repository, every field decided. */
export type PolicyRules = Omit<OperatorPolicyFile['defaults'], 'caps'> & {
  caps: PolicyCaps;
  read_repositories: string[];
};

/** A loaded policy: the file with its defaults complete (see `loadOperatorPolicy`). */
export type OperatorPolicy = Omit<OperatorPolicyFile, 'defaults'> & { defaults: PolicyRules };

/** JSON Schema for editors, generated from {@link OperatorPolicyFile}. */
export function operatorPolicyJsonSchema(): unknown {
  return z.toJSONSchema(OperatorPolicyFile, { io: 'input', target: 'draft-7' });
}
