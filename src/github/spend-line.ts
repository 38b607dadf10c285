import { type TaskSpend, usd } from '../spend/spend-ledger.ts';

/** What the tracking comment says about a task's spend. */
export type SpendLine = TaskSpend;

/** One line: tokens in and out, and their cost (naming models that had no price). */
export function spendLine(spend: SpendLine): string {
  const tokens = `${spend.inputTokens.toLocaleString('en-US')} input and ${spend.outputTokens.toLocaleString('en-US')} output tokens`;
  const unpriced = spend.unpriced.length
    ? ` (no price for ${spend.unpriced.map((m) => `\`${m.replace(/`/g, '')}\``).join(', ')})`
    : '';
  return `Model spend: ${tokens}, ${usd(spend.costUsd)}${unpriced}.`;
}
