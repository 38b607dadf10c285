import type { AuditEvent } from '../audit/audit-log.ts';
import { isRefusalEvent } from '../audit/audit-log.ts';

const MAX_SUMMARY = 240;

/** One line of at most `max` characters, whitespace runs folded. */
export function clip(text: string, max = MAX_SUMMARY): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function str(value: unknown): string {
  return value === undefined || value === null
    ? ''
    : typeof value === 'string'
      ? value
      : JSON.stringify(value);
}

/** Whether an event records something refused or failed (highlighted in the timeline). */
export function isRefusal(event: AuditEvent): boolean {
  return isRefusalEvent(event) || (event.type === 'task.outcome' && event.data.state !== 'succeeded');
}

/** What a tool call worked on: its command, else the file or pattern it named. */
export function toolTarget(input: unknown): string {
  if (Array.isArray(input)) {
    // Codex's apply_patch: the files it changed.
    return input
      .map((change) => str((change as { path?: unknown } | null)?.path))
      .filter(Boolean)
      .join(', ');
  }
  if (!input || typeof input !== 'object') return str(input);
  const i = input as Record<string, unknown>;
  for (const key of ['command', 'cmd', 'file_path', 'path', 'filePath', 'pattern', 'url', 'query']) {
    const value = i[key];
    if (typeof value === 'string' && value) return value;
    if (Array.isArray(value) && value.length) return value.map(str).join(' ');
  }
  return JSON.stringify(input);
}

/** Token counts (and cost) of a usage report, in one phrase. */
export function usagePhrase(d: Record<string, unknown>): string {
  const n = (v: unknown) => (typeof v === 'number' ? v.toLocaleString('en-US') : '?');
  const cached = typeof d.cachedInputTokens === 'number' && d.cachedInputTokens > 0;
  return `${n(d.inputTokens)} tokens in${cached ? ` (${n(d.cachedInputTokens)} cached)` : ''}, ${n(d.outputTokens)} out${
    typeof d.costUsd === 'number' ? `, $${d.costUsd.toFixed(4)}` : ''
  }`;
}

function agentEventSummary(d: Record<string, unknown>): string {
  switch (d.kind) {
    case 'session':
      return `session ${str(d.id)}${d.model ? `, model ${str(d.model)}` : ''}`;
    case 'message':
      return `${d.role === 'thinking' ? 'thinking' : d.final ? 'final message' : 'message'}: ${str(d.text)}`;
    case 'tool_call':
      return `${str(d.tool)}: ${toolTarget(d.input)}`;
    case 'tool_result':
      return `${str(d.tool)} ${d.ok === false ? 'failed' : 'ok'}${d.output ? `: ${str(d.output)}` : ''}`;
    case 'command':
      return `$ ${str(d.command)} → exit ${d.exitCode === null ? 'unknown' : str(d.exitCode)}`;
    case 'file_edit':
      return `${str(d.change)} ${str(d.path)}`;
    case 'usage':
      return `usage: ${usagePhrase(d)}`;
    case 'error':
      return `error: ${str(d.message)}`;
    case 'raw':
      return `${str(d.stream)}: ${str(d.line)}${d.note ? ` (${str(d.note)})` : ''}`;
    default:
      return `${str(d.kind)}: ${str(d.text ?? d.name ?? d.tool ?? '')}`;
  }
}

function contentSummary(event: AuditEvent): string | undefined {
  const content = event.content;
  if (!content || content.state === 'kept') return undefined;
  // Purged texts say only that they were purged: the audit.purged event of the chain says by whom and why.
  const why =
    content.state === 'purged'
      ? 'purged (see the audit.purged event)'
      : 'not kept (the conversation retention setting)';
  return `text ${why}; sha256 ${content.sha256.slice(0, 16)}…, ${content.bytes} bytes`;
}

/** One line saying what an event records, for the timeline. */
export function eventSummary(event: AuditEvent): string {
  const d = event.data as Record<string, unknown>;
  const gone = contentSummary(event);
  if (gone) return gone;
  switch (event.type) {
    case 'task.created': {
      const actor = d.actor as { login?: string; id?: number } | undefined;
      const trigger = d.trigger as { event?: string; deliveryId?: string } | undefined;
      return clip(
        `${actor?.id != null ? `@${actor?.login ?? '?'} (id ${actor.id})` : (actor?.login ?? '?')} via ${trigger?.event ?? '?'}` +
          `${trigger?.deliveryId ? ` (delivery ${trigger.deliveryId})` : ''}; ${str(d.repository)} ${str(d.base)} → ${str(d.branch)}`,
      );
    }
    case 'task.config': {
      const config = (d.config ?? {}) as Record<string, unknown>;
      return clip(
        `agent ${str(config.agent ?? 'claude')}${config.model ? `, model ${str(config.model)}` : ''}`,
      );
    }
    case 'task.state':
      return clip(`→ ${str(d.state)}${d.reason ? `: ${str(d.reason)}` : ''}`);
    case 'task.outcome':
      return clip(`${str(d.state)}${d.reason ? `: ${str(d.reason)}` : ''}`);
    case 'task.prompt':
      return clip(str(d.text));
    case 'task.setup':
      return clip(`setup: ${str(d.command)}`);
    case 'task.recovered':
      return clip(`after a restart: ${str(d.from)} → ${str(d.to)}${d.reason ? `: ${str(d.reason)}` : ''}`);
    case 'token.minted':
      return clip(
        `token for ${Array.isArray(d.repository) ? d.repository.join(', ') : str(d.repository)} (${Object.entries(
          (d.permissions ?? {}) as Record<string, unknown>,
        )
          .map(([k, v]) => `${k}: ${str(v)}`)
          .join(', ')}), expires ${str(d.expires_at)}`,
      );
    case 'token.revoked':
      return clip(`token for ${str(d.repository)} revoked`);
    case 'vm.created':
      return `VM ${str(d.id)}, ${str(d.accelerator)}, ${d.queuedMs !== undefined ? `waited ${str(d.queuedMs)} ms for a place (host at its VM limit), ` : ''}booted in ${str(d.bootMs)} ms, image ${str(d.image).slice(0, 19)}`;
    case 'vm.exec':
      return clip(
        `${Array.isArray(d.argv) ? d.argv.join(' ') : str(d.argv)}${d.uid !== undefined && d.uid !== null ? ` (uid ${str(d.uid)})` : ''}`,
      );
    case 'vm.exec_audit_incomplete':
      return clip(`the record of processes run in the VM may be incomplete: ${str(d.reason)}`);
    case 'vm.malformed_output':
      return clip(`the VM sent a line airlock could not read: ${str(d.error)}`);
    case 'agent.info':
      return clip(
        `${str(d.agent)}${d.version ? ` ${str(d.version)}` : ''}${d.model ? `, model ${str(d.model)}` : ''}${d.script ? `, script ${str(d.script)}` : ''}`,
      );
    case 'agent.exit':
      return `exited ${d.code === null || d.code === undefined ? `on signal ${str(d.signal)}` : `with ${str(d.code)}`} after ${str(d.durationMs)} ms, ${str(d.events)} events`;
    case 'agent.event':
      return clip(agentEventSummary(d));
    case 'proxy.egress':
      return `${str(d.decision)} ${str(d.method)} ${str(d.host)}:${str(d.port)} (↑${str(d.bytes_up)} ↓${str(d.bytes_down)} bytes)${d.reason ? `: ${str(d.reason)}` : ''}`;
    case 'proxy.git':
      return clip(
        `${str(d.decision)} ${str(d.service)} ${str(d.repo)}${d.reason ? `: ${str(d.reason)}` : ''}`,
      );
    case 'proxy.refused':
      return clip(
        `refused ${d.provider ? `${str(d.provider)} ` : ''}${str(d.method)} ${str(d.path)}${d.status ? ` (HTTP ${str(d.status)})` : ''}${d.reason ? `: ${str(d.reason)}` : ''}`,
      );
    case 'proxy.budget_exceeded':
      return clip(`model budget of ${str(d.budget)} tokens spent: no further model calls`);
    case 'git.ref_update':
      return clip(
        `${str(d.decision)} ${str(d.ref)} ${str(d.old ?? d.before).slice(0, 8)}→${str(d.new ?? d.after).slice(0, 8)}${d.reason ? `: ${str(d.reason)}` : ''}`,
      );
    case 'proxy.model':
      return clip(
        `${str(d.provider)} ${str(d.path)} → ${str(d.status)}, ${modelUsage(d.usage)}, ${str(d.duration_ms)} ms`,
      );
    case 'git.diff':
      return clip(str(d.stat) || 'no changes');
    case 'cleanup.vm':
      return d.destroyed === false ? 'VM teardown FAILED (see the log)' : `VM ${str(d.vm)} destroyed`;
    case 'cleanup.proxy':
      return clip(
        `proxy closed, token ${d.tokenRevoked === false ? 'NOT revoked' : 'revoked'}; model usage ${modelUsage(d.usage)}`,
      );
    case 'ci.verdict':
      return clip(`CI on ${str(d.headSha).slice(0, 8)}: ${str(d.verdict)} → ${str(d.action)}`);
    case 'audit.purged':
      return clip(
        `${Array.isArray(d.purged) ? d.purged.length : 0} text(s) purged by ${str(d.operator)}: ${str(d.reason)}`,
      );
    default:
      return clip(JSON.stringify(d));
  }
}

/** A proxy's token meter, in one phrase. */
function modelUsage(usage: unknown): string {
  if (!usage || typeof usage !== 'object') return 'no usage';
  const u = usage as Record<string, unknown>;
  const n = (v: unknown) => (typeof v === 'number' ? v.toLocaleString('en-US') : '0');
  return `${n(u.inputTokens ?? u.input_tokens ?? u.input)} in / ${n(u.outputTokens ?? u.output_tokens ?? u.output)} out tokens`;
}
