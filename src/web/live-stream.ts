import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { timelineRow } from './task-views.ts';

/** What a live stream of one task's events needs. */
export interface LiveStreamOptions {
  audit: Pick<AuditLog, 'events' | 'subscribe'>;
  taskId: string;
  /** Send events after this sequence number (the page's last row, or the browser's Last-Event-ID). */
  afterSeq: number;
  /** Whether the task has already ended (the stream then sends what is left and ends). */
  finished: boolean;
  /** Asks again whether the viewer may still see the task; false ends the stream. */
  stillAllowed: () => Promise<boolean>;
  recheckMs: number;
  keepAliveMs: number;
}

/**
 * Server-sent events for a task page: first the events recorded since the page was rendered, then
 * each new one as the audit log writes it, until the task's outcome is recorded, the viewer loses
 * access, or the browser goes away. Only this task's events are ever sent.
 */
export function liveTaskStream(c: Context, o: LiveStreamOptions): Response {
  return streamSSE(c, async (stream) => {
    const queue: AuditEvent[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = o.audit.subscribe((event) => {
      if (event.taskId !== o.taskId) return;
      queue.push(event);
      wake?.();
    });
    stream.onAbort(() => wake?.());
    let lastSent = o.afterSeq;
    let ended = false;
    const send = async (event: AuditEvent) => {
      if (event.seq <= lastSent) return;
      lastSent = event.seq;
      await stream.writeSSE({
        event: 'audit',
        id: String(event.seq),
        data: JSON.stringify({
          seq: event.seq,
          type: event.type,
          row: timelineRow(event).value,
          ...(event.type === 'task.state' ? { state: event.data.state } : {}),
        }),
      });
      if (event.type === 'task.outcome') ended = true;
    };
    try {
      // Subscribed first, then the backlog: nothing written in between is missed (duplicates are skipped).
      for (const event of o.audit.events(o.taskId, { afterSeq: o.afterSeq })) await send(event);
      let nextCheck = Date.now() + o.recheckMs;
      while (!ended && !o.finished && !stream.aborted) {
        if (queue.length === 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(o.keepAliveMs, Math.max(0, nextCheck - Date.now())));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
        while (queue.length && !stream.aborted) await send(queue.shift()!);
        if (stream.aborted || ended) break;
        if (Date.now() >= nextCheck) {
          if (!(await o.stillAllowed())) {
            await stream.writeSSE({ event: 'end', data: 'access' });
            return;
          }
          nextCheck = Date.now() + o.recheckMs;
        }
        if (queue.length === 0) await stream.write(': keep-alive\n\n');
      }
      if (!stream.aborted) await stream.writeSSE({ event: 'end', data: 'finished' });
    } finally {
      unsubscribe();
    }
  });
}
