import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { TRACING_ENV_NAMES, TracingSettings, tracingEnvironment } from '../tracing/tracing-settings.ts';

const positiveInt = z.coerce.number().int().positive();

/**
 * airlock's settings, read from the environment once at boot. Each field documents the variable
 * that sets it. GitHub App credentials are optional: without them airlock serves the manifest
 * registration flow so the app can be created from a browser.
 */
export const AppConfig = z.object({
  /** HOST / PORT: where the web server (webhooks, UI, API) listens. */
  host: z.string().default('0.0.0.0'),
  port: z.coerce.number().int().min(0).max(65535).default(3000),
  /**
   * The registration flow (served while there are no app credentials). AIRLOCK_REGISTRATION_HOST:
   * where it listens; loopback by default because whoever completes it installs their app's
   * credentials. Anywhere else it asks for a one-time code printed on the console.
   * GITHUB_WEB_URL / GITHUB_API_URL: where the app is created (GitHub Enterprise Server too).
   */
  registration: z.object({
    host: z.string().min(1).default('127.0.0.1'),
    webUrl: z.url().default('https://github.com'),
    apiUrl: z.url().default('https://api.github.com'),
  }),
  /**
   * AIRLOCK_ROLE: `all` (the default: control plane and worker in one process, as `npm start`
   * runs it), `control` (webhooks, intake, GitHub jobs, web UI, API; no VMs) or `worker` (leases
   * tasks and runs their VMs; no GitHub App key). See docs/deploy.md.
   */
  role: z
    .enum(['all', 'control', 'worker'], { message: 'AIRLOCK_ROLE must be all, control or worker' })
    .default('all'),
  /**
   * DATABASE_URL: a PostgreSQL URL (postgres://user:password@host:5432/airlock) that control
   * planes and workers share; unset: embedded SQLite under AIRLOCK_DATA_DIR (one process).
   */
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, {
      message: 'DATABASE_URL must be a PostgreSQL URL: postgres://user:password@host:5432/db',
    })
    .optional(),
  cluster: z.object({
    /** AIRLOCK_LEASE_SECONDS: how long a worker's hold on a task lasts unless its heartbeat renews it. */
    leaseSeconds: z.coerce.number().int().min(3).max(600).default(30),
    /**
     * AIRLOCK_WORKER_SECRET: the secret workers present to the control plane's internal API (at
     * least 32 characters; generate one with: openssl rand -hex 32).
     */
    workerSecret: z
      .string()
      .min(32, { message: 'AIRLOCK_WORKER_SECRET must be at least 32 characters (openssl rand -hex 32)' })
      .optional(),
    /** AIRLOCK_INTERNAL_HOST / AIRLOCK_INTERNAL_PORT: where the control plane serves workers. */
    internalHost: z.string().min(1).default('127.0.0.1'),
    internalPort: z.coerce.number().int().min(0).max(65535).default(3001),
    /** AIRLOCK_CONTROL_URL: the control plane's internal API, as a worker reaches it. */
    controlUrl: z
      .url({ message: 'AIRLOCK_CONTROL_URL must be a URL such as http://airlock-control:3001' })
      .optional(),
    /** AIRLOCK_WORKER_NAME: a worker's stable name (its host's by default); its restart recovers its tasks at once. */
    workerName: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, { message: 'AIRLOCK_WORKER_NAME: letters, digits, . _ - (up to 64)' }),
  }),
  /** AIRLOCK_PUBLIC_URL: the URL people reach airlock at; audit links on GitHub point here. */
  publicUrl: z.url({
    message: 'AIRLOCK_PUBLIC_URL must be an absolute URL such as https://airlock.example.com',
  }),
  /** AIRLOCK_DATA_DIR: the SQLite database and per-task scratch space. */
  dataDir: z.string().min(1).default('./data'),
  /** AIRLOCK_CACHE_DIR: built VM images and the accelerator probe result. */
  cacheDir: z.string().min(1).default('/var/cache/airlock'),
  /** AIRLOCK_POLICY: the operator's policy file (src/policy); the built-in policy when unset. */
  policyFile: z.string().min(1).optional(),
  /**
   * AIRLOCK_DEBIAN_SOURCES: an apt sources file (one-line or deb822) naming the Debian archive
   * environment builds install packages from; unset: this host's own apt sources.
   */
  debianSources: z.string().min(1).optional(),
  /** LOG_LEVEL */
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** LOG_FORMAT: pretty (for people) or json (for collectors); unset: pretty on a terminal, else json. */
  logFormat: z.enum(['pretty', 'json'], { message: 'LOG_FORMAT must be pretty or json' }).optional(),
  github: z
    .object({
      /** APP_ID */
      appId: positiveInt,
      /** PRIVATE_KEY (PEM text) or PRIVATE_KEY_PATH (a file holding it). */
      privateKey: z.string().includes('PRIVATE KEY', {
        message: 'PRIVATE_KEY must be the PEM private key downloaded from the GitHub App settings page',
      }),
      /** WEBHOOK_SECRET */
      webhookSecret: z.string().min(8, { message: 'WEBHOOK_SECRET must be at least 8 characters' }),
      /** GITHUB_API_URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
      apiUrl: z.url().default('https://api.github.com'),
      /** GITHUB_CLIENT_ID / GITHUB_CLIENT_SECRET: the app's OAuth credentials, for sign-in to the web UI. */
      clientId: z.string().optional(),
      clientSecret: z.string().optional(),
      /** GITHUB_WEB_URL: where people sign in (https://github.com, or the GHES host). */
      webUrl: z.url().default('https://github.com'),
    })
    .optional(),
  models: z.object({
    /** ANTHROPIC_API_KEY: held by the credential proxy only. */
    anthropicApiKey: z.string().optional(),
    /** OPENAI_API_KEY: held by the credential proxy only. */
    openaiApiKey: z.string().optional(),
    /** ANTHROPIC_UPSTREAM_URL / OPENAI_UPSTREAM_URL: where the proxy forwards model calls. */
    anthropicUpstreamUrl: z.url().default('https://api.anthropic.com'),
    openaiUpstreamUrl: z.url().default('https://api.openai.com'),
  }),
  scheduler: z.object({
    /**
     * AIRLOCK_MAX_CONCURRENT_TASKS: tasks running at once on this host, and its VM limit (tasks',
     * builds' and warm VMs; a VM past it waits for one to end).
     */
    maxConcurrent: positiveInt.default(2),
    /** AIRLOCK_MAX_TASKS_PER_REPO: VMs running at once for one repository. */
    maxPerRepo: positiveInt.default(1),
  }),
  environments: z.object({
    /** AIRLOCK_ENV_DISK_GIB: disk the environments' snapshots may take; the least recently used go beyond it. */
    diskGib: z.coerce
      .number()
      .positive({ message: 'AIRLOCK_ENV_DISK_GIB must be a positive number of GiB' })
      .default(50),
  }),
  /** AIRLOCK_ACCEL: auto probes KVM with a test boot and falls back to TCG. */
  accel: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
  /**
   * AIRLOCK_SNAPSHOTS: `on` restores every VM from a snapshot (the base image's, made once per VM
   * shape and kept in the cache directory, or its repository's environment); `off` boots each cold.
   */
  snapshots: z.enum(['on', 'off'], { message: 'AIRLOCK_SNAPSHOTS must be on or off' }).default('on'),
  /**
   * AIRLOCK_WARM_POOL: restored, paused VMs kept ready per snapshot in use, so a task takes one at
   * once. They count against AIRLOCK_MAX_CONCURRENT_TASKS (the pool fills only below it).
   */
  warmPool: z.coerce
    .number({ message: 'AIRLOCK_WARM_POOL must be a whole number' })
    .int({ message: 'AIRLOCK_WARM_POOL must be a whole number' })
    .min(0, { message: 'AIRLOCK_WARM_POOL must be 0 or more' })
    .max(32, { message: 'AIRLOCK_WARM_POOL is at most 32' })
    .default(0),
  /**
   * AIRLOCK_OPERATORS: GitHub logins (comma-separated) of the people who run this airlock: signed
   * in, they see every task, local runs included.
   */
  operators: z
    .string()
    .default('')
    .transform((list) =>
      list
        .split(',')
        .map((login) => login.trim())
        .filter(Boolean),
    ),
  /** AIRLOCK_ADMIN_TOKEN: bearer token for the JSON API (automation) and, if required, /metrics. */
  adminToken: z
    .string()
    .min(16, { message: 'AIRLOCK_ADMIN_TOKEN must be at least 16 characters' })
    .optional(),
  web: z.object({
    /**
     * AIRLOCK_SESSION_SECRET: key material for the sign-in cookie (sealed with AES-256-GCM). Required
     * when GITHUB_CLIENT_ID is set; changing it signs everybody out.
     */
    sessionSecret: z
      .string()
      .min(32, { message: 'AIRLOCK_SESSION_SECRET must be at least 32 characters (openssl rand -hex 32)' })
      .optional(),
    /** AIRLOCK_SESSION_HOURS: how long a sign-in lasts (GitHub's user tokens last 8 hours). */
    sessionHours: positiveInt.max(24 * 30).default(8),
    /**
     * AIRLOCK_ACCESS_CACHE_SECONDS: how long GitHub's answer to "which repositories can this person
     * read" is reused before it is asked again. Losing access takes effect within this time.
     */
    accessCacheSeconds: z.coerce.number().int().min(0).max(3600).default(60),
    /** AIRLOCK_METRICS_PUBLIC: false requires the admin token on /metrics. */
    metricsPublic: z
      .enum(['true', 'false'], { message: 'AIRLOCK_METRICS_PUBLIC must be true or false' })
      .default('true')
      .transform((v) => v === 'true'),
  }),
  retention: z.object({
    /**
     * AIRLOCK_PROMPT_RETENTION_DAYS: days to keep the text of prompts and model responses after a
     * task ends (`forever` keeps it; 0 never stores it). Their digests stay in the chain for good.
     */
    promptDays: z
      .union([z.literal('forever'), z.coerce.number().int().min(0)], {
        message: 'AIRLOCK_PROMPT_RETENTION_DAYS must be a whole number of days (0 or more) or forever',
      })
      .default(90)
      .transform((v) => (v === 'forever' ? null : v)),
  }),
  /** OTEL_*: traces, exported over OTLP when an endpoint is set (see docs/observability.md). */
  tracing: TracingSettings,
});
export type AppConfig = z.infer<typeof AppConfig>;

/** Reads and validates settings from an environment; throws a ConfigError naming each bad variable. */
export function loadAppConfig(env: Record<string, string | undefined>): AppConfig {
  // Before anything reads the key file: a worker must never load the App key at all.
  if (env.AIRLOCK_ROLE === 'worker' && (env.PRIVATE_KEY || env.PRIVATE_KEY_PATH))
    throw new ConfigError('airlock settings are invalid', [
      'a worker never holds the GitHub App private key: unset PRIVATE_KEY and PRIVATE_KEY_PATH in its environment (the control plane mints each task its token)',
    ]);
  const privateKey = env.PRIVATE_KEY ?? readKeyFile(env.PRIVATE_KEY_PATH);
  const hasApp = Boolean(env.APP_ID || privateKey || env.WEBHOOK_SECRET);
  const port = env.PORT ?? '3000';
  const raw = {
    host: env.HOST,
    port,
    publicUrl: env.AIRLOCK_PUBLIC_URL ?? `http://localhost:${port}`,
    role: env.AIRLOCK_ROLE || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    cluster: {
      leaseSeconds: env.AIRLOCK_LEASE_SECONDS || undefined,
      workerSecret: env.AIRLOCK_WORKER_SECRET || undefined,
      internalHost: env.AIRLOCK_INTERNAL_HOST || undefined,
      internalPort: env.AIRLOCK_INTERNAL_PORT || undefined,
      controlUrl: env.AIRLOCK_CONTROL_URL || undefined,
      workerName:
        env.AIRLOCK_WORKER_NAME ||
        os
          .hostname()
          .replace(/[^A-Za-z0-9._-]/g, '-')
          .slice(0, 64),
    },
    dataDir: env.AIRLOCK_DATA_DIR,
    registration: {
      host: env.AIRLOCK_REGISTRATION_HOST || undefined,
      webUrl: env.GITHUB_WEB_URL,
      apiUrl: env.GITHUB_API_URL,
    },
    cacheDir: env.AIRLOCK_CACHE_DIR,
    snapshots: env.AIRLOCK_SNAPSHOTS || undefined,
    warmPool: env.AIRLOCK_WARM_POOL || undefined,
    policyFile: env.AIRLOCK_POLICY || undefined,
    debianSources: env.AIRLOCK_DEBIAN_SOURCES || undefined,
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT || undefined,
    github: hasApp
      ? {
          appId: env.APP_ID,
          privateKey: privateKey?.replace(/\\n/g, '\n'),
          webhookSecret: env.WEBHOOK_SECRET,
          apiUrl: env.GITHUB_API_URL,
          clientId: env.GITHUB_CLIENT_ID,
          clientSecret: env.GITHUB_CLIENT_SECRET,
          webUrl: env.GITHUB_WEB_URL,
        }
      : undefined,
    models: {
      anthropicApiKey: env.ANTHROPIC_API_KEY,
      openaiApiKey: env.OPENAI_API_KEY,
      anthropicUpstreamUrl: env.ANTHROPIC_UPSTREAM_URL,
      openaiUpstreamUrl: env.OPENAI_UPSTREAM_URL,
    },
    scheduler: {
      maxConcurrent: env.AIRLOCK_MAX_CONCURRENT_TASKS,
      maxPerRepo: env.AIRLOCK_MAX_TASKS_PER_REPO,
    },
    environments: { diskGib: env.AIRLOCK_ENV_DISK_GIB || undefined },
    accel: env.AIRLOCK_ACCEL,
    operators: env.AIRLOCK_OPERATORS,
    adminToken: env.AIRLOCK_ADMIN_TOKEN,
    web: {
      sessionSecret: env.AIRLOCK_SESSION_SECRET,
      sessionHours: env.AIRLOCK_SESSION_HOURS,
      accessCacheSeconds: env.AIRLOCK_ACCESS_CACHE_SECONDS,
      metricsPublic: env.AIRLOCK_METRICS_PUBLIC,
    },
    retention: { promptDays: env.AIRLOCK_PROMPT_RETENTION_DAYS || undefined },
    tracing: tracingEnvironment(env),
  };
  const parsed = AppConfig.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => {
      const variable = ENV_NAMES[issue.path.join('.')] ?? issue.path.join('.');
      const missing = issue.code === 'invalid_type' && issue.message.includes('undefined');
      return missing
        ? `${variable} is required when any GitHub App setting is given (set it, or unset APP_ID, PRIVATE_KEY and WEBHOOK_SECRET to register a new app)`
        : `${variable}: ${issue.message}`;
    });
    throw new ConfigError('airlock settings are invalid', issues);
  }
  const config = parsed.data;
  const roleProblems = roleIssues(config);
  if (roleProblems.length) throw new ConfigError('airlock settings are invalid', roleProblems);
  const oauth = [config.github?.clientId, config.github?.clientSecret].filter(Boolean).length;
  if (oauth === 1) {
    throw new ConfigError('airlock settings are invalid', [
      'GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together: set both (from the GitHub App settings page) to enable sign-in, or neither',
    ]);
  }
  if (oauth === 2 && !config.web.sessionSecret) {
    throw new ConfigError('airlock settings are invalid', [
      'AIRLOCK_SESSION_SECRET is required when GITHUB_CLIENT_ID is set: it seals the sign-in cookie (generate one with: openssl rand -hex 32)',
    ]);
  }
  return { ...config, dataDir: path.resolve(config.dataDir), cacheDir: path.resolve(config.cacheDir) };
}

/** What a role needs and must not have (docs/deploy.md). */
function roleIssues(config: AppConfig): string[] {
  const issues: string[] = [];
  const role = config.role;
  if (role !== 'all' && !config.databaseUrl)
    issues.push(
      `AIRLOCK_ROLE=${role} needs DATABASE_URL (postgres://…): control planes and workers share their state through PostgreSQL`,
    );
  if (role === 'worker') {
    if (config.github)
      issues.push(
        'a worker takes no GitHub App settings: unset APP_ID and WEBHOOK_SECRET in its environment',
      );
    if (!config.cluster.controlUrl)
      issues.push(
        'AIRLOCK_CONTROL_URL is required for a worker: the control plane internal API (e.g. http://airlock-control:3001)',
      );
    if (!config.cluster.workerSecret)
      issues.push(
        'AIRLOCK_WORKER_SECRET is required for a worker: the secret the control plane expects from workers',
      );
  }
  if (role === 'control') {
    if (!config.github)
      issues.push('AIRLOCK_ROLE=control needs the GitHub App settings (APP_ID, PRIVATE_KEY, WEBHOOK_SECRET)');
    if (!config.cluster.workerSecret)
      issues.push(
        'AIRLOCK_WORKER_SECRET is required for a control plane: workers present it to its internal API',
      );
  }
  return issues;
}

function readKeyFile(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`PRIVATE_KEY_PATH ${file} cannot be read`, [], {
      cause,
      hint: 'point it at the .pem file downloaded from the GitHub App settings page',
    });
  }
}

const ENV_NAMES: Record<string, string> = {
  host: 'HOST',
  port: 'PORT',
  publicUrl: 'AIRLOCK_PUBLIC_URL',
  dataDir: 'AIRLOCK_DATA_DIR',
  cacheDir: 'AIRLOCK_CACHE_DIR',
  snapshots: 'AIRLOCK_SNAPSHOTS',
  warmPool: 'AIRLOCK_WARM_POOL',
  policyFile: 'AIRLOCK_POLICY',
  debianSources: 'AIRLOCK_DEBIAN_SOURCES',
  logLevel: 'LOG_LEVEL',
  logFormat: 'LOG_FORMAT',
  'registration.host': 'AIRLOCK_REGISTRATION_HOST',
  'registration.webUrl': 'GITHUB_WEB_URL',
  'registration.apiUrl': 'GITHUB_API_URL',
  'github.appId': 'APP_ID',
  'github.privateKey': 'PRIVATE_KEY',
  'github.webhookSecret': 'WEBHOOK_SECRET',
  'github.apiUrl': 'GITHUB_API_URL',
  'github.webUrl': 'GITHUB_WEB_URL',
  'models.anthropicUpstreamUrl': 'ANTHROPIC_UPSTREAM_URL',
  'models.openaiUpstreamUrl': 'OPENAI_UPSTREAM_URL',
  'scheduler.maxConcurrent': 'AIRLOCK_MAX_CONCURRENT_TASKS',
  'scheduler.maxPerRepo': 'AIRLOCK_MAX_TASKS_PER_REPO',
  'environments.diskGib': 'AIRLOCK_ENV_DISK_GIB',
  accel: 'AIRLOCK_ACCEL',
  adminToken: 'AIRLOCK_ADMIN_TOKEN',
  operators: 'AIRLOCK_OPERATORS',
  'web.sessionSecret': 'AIRLOCK_SESSION_SECRET',
  'web.sessionHours': 'AIRLOCK_SESSION_HOURS',
  'web.accessCacheSeconds': 'AIRLOCK_ACCESS_CACHE_SECONDS',
  'web.metricsPublic': 'AIRLOCK_METRICS_PUBLIC',
  'retention.promptDays': 'AIRLOCK_PROMPT_RETENTION_DAYS',
  role: 'AIRLOCK_ROLE',
  databaseUrl: 'DATABASE_URL',
  'cluster.leaseSeconds': 'AIRLOCK_LEASE_SECONDS',
  'cluster.workerSecret': 'AIRLOCK_WORKER_SECRET',
  'cluster.internalHost': 'AIRLOCK_INTERNAL_HOST',
  'cluster.internalPort': 'AIRLOCK_INTERNAL_PORT',
  'cluster.controlUrl': 'AIRLOCK_CONTROL_URL',
  'cluster.workerName': 'AIRLOCK_WORKER_NAME',
  ...TRACING_ENV_NAMES,
};
