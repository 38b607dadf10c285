import type { AuditEvent } from '../audit/audit-log.ts';

const MAX_SUMMARY = 240;

function clip(text: string, max = MAX_SUMMARY): string {
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
  const d = event.data;
  return (
    d.decision === 'refused' ||
    event.type === 'proxy.refused' ||
    event.type === 'proxy.budget_exceeded' ||
    (event.type === 'task.outcome' && d.state !== 'succeeded')
  );
}

/** One line saying what an event records, for the timeline. */
export function eventSummary(event: AuditEvent): string {
  const d = event.data as Record<string, unknown>;
  if (event.content && event.content.state !== 'kept') {
    const why =
      event.content.state === 'purged' ? 'purged under the retention policy' : 'not kept (retention policy)';
    return `text ${why}; sha256 ${event.content.sha256.slice(0, 16)}…, ${event.content.bytes} bytes`;
  }
  switch (event.type) {
    case 'task.created': {
      const actor = d.actor as { login?: string; id?: number } | undefined;
      const trigger = d.trigger as { event?: string; deliveryId?: string } | undefined;
      return clip(
        `@${actor?.login ?? '?'} (id ${actor?.id ?? '?'}) via ${trigger?.event ?? '?'}` +
          `${trigger?.deliveryId ? ` (delivery ${trigger.deliveryId})` : ''}; ${str(d.repository)} ${str(d.base)} → ${str(d.branch)}`,
      );
    }
    case 'task.state':
      return `→ ${str(d.state)}${d.reason ? `: ${str(d.reason)}` : ''}`;
    case 'task.outcome':
      return clip(`${str(d.state)}${d.reason ? `: ${str(d.reason)}` : ''}`);
    case 'task.prompt':
      return clip(str(d.text));
    case 'token.minted':
    case 'token.revoked':
      return clip(
        Object.entries(d)
          .map(([k, v]) => `${k}: ${str(v)}`)
          .join(', '),
      );
    case 'vm.created':
      return `VM ${str(d.id)}, ${str(d.accelerator)}, booted in ${str(d.bootMs)} ms, image ${str(d.image).slice(0, 19)}`;
    case 'vm.exec':
      return clip(
        `${Array.isArray(d.argv) ? d.argv.join(' ') : str(d.argv)}${d.uid !== undefined ? ` (uid ${str(d.uid)})` : ''}`,
      );
    case 'agent.event':
      return clip(`${str(d.kind)}: ${str(d.text ?? d.name ?? d.tool ?? '')}`);
    case 'proxy.egress':
      return `${str(d.decision)} ${str(d.method)} ${str(d.host)}:${str(d.port)} (↑${str(d.bytes_up)} ↓${str(d.bytes_down)} bytes)${d.reason ? `: ${str(d.reason)}` : ''}`;
    case 'proxy.git':
      return clip(
        `${str(d.decision)} ${str(d.service)} ${str(d.repo)}${d.reason ? `: ${str(d.reason)}` : ''}`,
      );
    case 'git.ref_update':
      return clip(
        `${str(d.decision)} ${str(d.ref)} ${str(d.old ?? d.before).slice(0, 8)}→${str(d.new ?? d.after).slice(0, 8)}${d.reason ? `: ${str(d.reason)}` : ''}`,
      );
    case 'proxy.model':
      return clip(
        `${str(d.provider)} ${str(d.path)} → ${str(d.status)}, usage ${str(d.usage)}, ${str(d.duration_ms)} ms`,
      );
    case 'git.diff':
      return clip(str(d.stat) || 'no changes');
    case 'audit.purged':
      return clip(
        `${Array.isArray(d.purged) ? d.purged.length : 0} text(s) purged by ${str(d.operator)}: ${str(d.reason)}`,
      );
    default:
      return clip(JSON.stringify(d));
  }
}
