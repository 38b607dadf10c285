import type { Generated } from 'kysely';

/**
 * The tables of airlock's database, as Kysely sees them: one description for SQLite and
 * PostgreSQL. Both store the same column types: text for times (ISO 8601, UTC), JSON (`*_json`)
 * and ids; integers (PostgreSQL `bigint`, read back as numbers) for counts, GitHub ids and flags.
 */
export interface Schema {
  tasks: TasksTable;
  audit_events: AuditEventsTable;
  audit_payloads: AuditPayloadsTable;
  ci_verdicts: CiVerdictsTable;
  deliveries: DeliveriesTable;
  webhook_inbox: WebhookInboxTable;
  github_jobs: GithubJobsTable;
  approvals: ApprovalsTable;
  held_results: HeldResultsTable;
  task_spend: TaskSpendTable;
  environment_builds: EnvironmentBuildsTable;
  environment_build_logs: EnvironmentBuildLogsTable;
  environments: EnvironmentsTable;
  workers: WorkersTable;
  schema_migrations: { name: string; applied_at: string };
}

export interface TasksTable {
  id: string;
  installation_id: number | null;
  repo_full_name: string;
  repo_id: number | null;
  issue_number: number | null;
  pr_number: number | null;
  kind: string;
  state: string;
  reason: string | null;
  branch: string;
  base_ref: string | null;
  actor_login: string;
  actor_id: number | null;
  trigger_event: string;
  trigger_url: string | null;
  delivery_id: string | null;
  instruction: string | null;
  context_json: Generated<string>;
  config_json: Generated<string>;
  parent_task_id: string | null;
  attempt: Generated<number>;
  tracking_comment_id: number | null;
  check_run_id: number | null;
  head_sha: string | null;
  result_json: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  start_json: Generated<string>;
  thread_json: string | null;
  /** Arrival order among rows of one `created_at` (SQLite fills it in after the insert). */
  seq: Generated<number | null>;
  /** The worker running the task, while it runs (migration 010). */
  lease_owner: string | null;
  /** When that worker's hold on the task ends unless it renews it. */
  lease_expires_at: string | null;
  /** Who asked to cancel the task while a worker runs it (the worker stops it). */
  cancel_requested_by: string | null;
}

export interface WorkersTable {
  id: string;
  host: string;
  pid: number;
  capacity: number;
  started_at: string;
  heartbeat_at: string;
  stopped_at: string | null;
}

export interface AuditEventsTable {
  task_id: string;
  seq: number;
  ts: string;
  type: string;
  data_json: string;
  prev_hash: string;
  hash: string;
}

export interface AuditPayloadsTable {
  task_id: string;
  seq: number;
  data_json: string;
}

export interface CiVerdictsTable {
  repo_full_name: string;
  branch: string;
  head_sha: string;
  task_id: string;
  verdict: 'passed' | 'failed';
  action: string;
  fingerprint: string | null;
  detail_json: Generated<string>;
  decided_at: string;
}

export interface DeliveriesTable {
  delivery_id: string;
  event: string;
  action: string | null;
  installation_id: number | null;
  repo_full_name: string | null;
  intent_json: string;
  status: 'pending' | 'done' | 'ignored' | 'refused' | 'failed';
  outcome: string | null;
  task_id: string | null;
  attempts: Generated<number>;
  received_at: string;
  processed_at: string | null;
  not_before: string | null;
  claimed_by: string | null;
  claimed_until: string | null;
  /** The W3C traceparent of the delivery's trace (migration 012). */
  trace_parent: string | null;
}

export interface WebhookInboxTable {
  delivery_id: string;
  event: string;
  payload: string | null;
  received_at: string;
  dispatched_at: string | null;
  attempts: Generated<number>;
  error: string | null;
  body_sha256: string | null;
  trace_parent: string | null;
}

export interface GithubJobsTable {
  id: Generated<number>;
  task_id: string | null;
  delivery_id: string | null;
  kind: string;
  payload_json: string;
  status: 'pending' | 'done' | 'failed';
  attempts: Generated<number>;
  not_before: string;
  last_error: string | null;
  created_at: string;
  done_at: string | null;
  claimed_by: string | null;
  claimed_until: string | null;
}

export interface ApprovalsTable {
  id: Generated<number>;
  task_id: string;
  gate: 'run' | 'push';
  state: Generated<'pending' | 'approved' | 'rejected' | 'expired' | 'withdrawn'>;
  why: string;
  shown_json: string;
  shown_digest: string;
  requested_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_by_id: number | null;
  decided_at: string | null;
  channel: 'comment' | 'web' | 'expiry' | 'cancel' | null;
  released_at: string | null;
}

export interface HeldResultsTable {
  task_id: string;
  base_sha: string | null;
  head_sha: string;
  repo_path: string;
  bundle_path: string;
  bundle_sha256: string;
  /** The bundle's bytes, for a push run on another host than the one that held it; null once discarded. */
  bundle: Buffer | null;
  diff_stat: string;
  patch: string;
  patch_truncated: Generated<number>;
  files_json: string;
  held_at: string;
  discarded_at: string | null;
}

export interface TaskSpendTable {
  task_id: string;
  model: string;
  repo_full_name: string;
  owner: string;
  month: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number | null;
  recorded_at: string;
}

export interface EnvironmentBuildsTable {
  id: string;
  repo_full_name: string;
  repo_id: number | null;
  installation_id: number | null;
  state: string;
  reason: string | null;
  trigger_json: string;
  config_json: string;
  commit_sha: string | null;
  env_key: string | null;
  environment_id: string | null;
  log_tail: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** The worker (AIRLOCK_WORKER_NAME) that runs or ran it; null on one host, or not taken yet. */
  host: string | null;
  heartbeat_at: string | null;
}

export interface EnvironmentBuildLogsTable {
  build_id: string;
  seq: number;
  chunk: string;
}

export interface EnvironmentsTable {
  id: string;
  repo_full_name: string;
  build_id: string;
  spec_hash: string;
  env_key: string;
  commit_sha: string;
  dir: string;
  size_bytes: number;
  state: string;
  created_at: string;
  last_used_at: string;
  collected_at: string | null;
  collected_why: string | null;
  /** JSON WorkspaceRefs; null for environments built before they were recorded. */
  workspace_refs: string | null;
  /** The worker whose data directory holds it; null on one host. */
  host: string | null;
  /** Arrival order among rows of one `created_at` (SQLite fills it in after the insert). */
  seq: Generated<number | null>;
}
