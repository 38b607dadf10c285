import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The hash a chain starts from. */
export const GENESIS_HASH = '0'.repeat(64);

/** The key under which a conversation event's chained data holds its text's digest. */
export const CONTENT_KEY = '$content';

/**
 * Where a prompt or model response's text stands: `kept` (in `data`), `purged` (deleted under the
 * retention policy or by an operator; the purge is an event of the same chain) or `not_kept` (the
 * policy said not to store it). The digest stays in the chain whatever happens to the text.
 */
export const AuditContent = z.object({
  sha256: z.string(),
  bytes: z.number().int().nonnegative(),
  state: z.enum(['kept', 'purged', 'not_kept']),
});
export type AuditContent = z.infer<typeof AuditContent>;

/** One stored audit event. */
export const AuditEvent = z.object({
  taskId: z.string(),
  seq: z.number().int().positive(),
  ts: z.string(),
  type: z.string(),
  data: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
  /** Present on conversation events (prompts, model responses): see {@link AuditContent}. */
  content: AuditContent.optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;

const AGENT_METADATA_TYPES = new Set(['agent.info', 'agent.exit']);

/**
 * Whether an event type carries prompt or model-response text, which the retention policy governs:
 * the prompt as sent, and everything the agent said or did (messages, tool calls), but not the
 * agent's name, version or exit status.
 */
export function isConversationType(type: string): boolean {
  return type === 'task.prompt' || (type.startsWith('agent.') && !AGENT_METADATA_TYPES.has(type));
}

/** Agent events that are bookkeeping rather than what the model said or did: kept in the chain. */
const AGENT_METADATA_KINDS = new Set(['session', 'usage']);

/** Whether this event's text is governed by the retention policy (its type, and for agent events its kind). */
export function isConversationEvent(type: string, data: Record<string, unknown>): boolean {
  if (type === 'agent.event' && AGENT_METADATA_KINDS.has(String(data.kind))) return false;
  return isConversationType(type);
}

/** The values of one audit_events row, in column order. */
export type EventRowValues = [string, number, string, string, string, string, string];

/** The hash of one event: sha256 over the previous hash and the event's canonical fields. */
export function eventHash(e: {
  taskId: string;
  seq: number;
  ts: string;
  type: string;
  dataJson: string;
  prevHash: string;
}): string {
  return createHash('sha256')
    .update(`${e.prevHash}\n${e.taskId}\n${e.seq}\n${e.ts}\n${e.type}\n${e.dataJson}`)
    .digest('hex');
}

/** JSON with object keys sorted, so the same data always hashes the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortedKeys(value)) ?? 'null';
}

function sortedKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const v =
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
      ? (value as { toJSON(): unknown }).toJSON()
      : value;
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(sortedKeys);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(v).sort()) out[key] = sortedKeys((v as Record<string, unknown>)[key]);
  return out;
}

/** An audit_events row, with its payload's text when the query joined audit_payloads. */
export interface StoredEventRow {
  task_id: string;
  seq: number;
  ts: string;
  type: string;
  data_json: string;
  prev_hash: string;
  hash: string;
  payload_json?: string | null;
}

/** Turns a stored row (and its joined payload, if any) into an event as readers see it. */
export function storedRowToEvent(row: StoredEventRow): AuditEvent {
  const stored = JSON.parse(row.data_json) as Record<string, unknown>;
  const digest = stored[CONTENT_KEY] as { sha256: string; bytes: number; kept: boolean } | undefined;
  const base = {
    taskId: row.task_id,
    seq: row.seq,
    ts: row.ts,
    type: row.type,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
  if (!digest || !isConversationType(row.type)) return AuditEvent.parse({ ...base, data: stored });
  const kept = typeof row.payload_json === 'string';
  return AuditEvent.parse({
    ...base,
    data: kept ? JSON.parse(row.payload_json as string) : {},
    content: {
      sha256: digest.sha256,
      bytes: digest.bytes,
      state: kept ? 'kept' : digest.kept ? 'purged' : 'not_kept',
    },
  });
}
