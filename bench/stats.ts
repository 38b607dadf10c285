import { mkdirSync, writeFileSync } from 'node:fs';

/** The q-quantile (0..1) of a list of numbers, by nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Median of a list of numbers. */
export const median = (values: readonly number[]): number => quantile(values, 0.5);

/** Rounds to `digits` decimals. */
export const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits;

/** Writes bench/results/<name>.json and prints the figures. */
export function writeResults(name: string, figures: Record<string, unknown>): void {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const record = { bench: name, at: new Date().toISOString(), host: { cpus: navigatorCpus() }, ...figures };
  writeFileSync(new URL(`${name}.json`, dir), `${JSON.stringify(record, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
}

function navigatorCpus(): number {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 0;
}
