import { html, type SafeHtml } from './html.ts';

/**
 * An instant as `<time>`: rendered in UTC with its zone named, and rewritten to the reader's own
 * time zone by the page script (see LIVE_SCRIPT) where scripts run.
 */
export function instant(iso: string, style: 'full' | 'time' = 'full'): SafeHtml {
  const shown =
    style === 'time' ? `${iso.slice(11, 19)} UTC` : `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
  return html`<time datetime="${iso}" data-local="${style}">${shown}</time>`;
}

/** A duration in the units a person reads: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const totalS = Math.round(s);
  if (totalS < 3600) return `${Math.floor(totalS / 60)} min ${String(totalS % 60).padStart(2, '0')} s`;
  const totalMin = Math.round(totalS / 60);
  if (totalMin < 48 * 60)
    return `${Math.floor(totalMin / 60)} h ${String(totalMin % 60).padStart(2, '0')} min`;
  return `${Math.round(totalMin / 1440)} days`;
}

/** Milliseconds from one ISO instant to another. */
export function between(from: string, to: string): number {
  return Date.parse(to) - Date.parse(from);
}
