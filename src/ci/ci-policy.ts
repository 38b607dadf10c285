import { createHash } from 'node:crypto';
import { z } from 'zod';

/** One failing check, as CI reported it (carried in a CI follow-up's context). */
export const CiFailure = z
  .object({
    name: z.string(),
    conclusion: z.string(),
    annotations: z.array(z.object({ path: z.string(), line: z.number().nullable(), message: z.string() })),
    logTail: z.string(),
  })
  .strict();
export type CiFailure = z.infer<typeof CiFailure>;

/** Whether a failure should become a follow-up, and why not when it should not. */
export type AutofixDecision = { fix: true; attempt: number } | { fix: false; why: string };

/**
 * Decides whether a CI failure on an agent branch becomes a follow-up task. Pure, so every rule
 * is unit-tested: the repository must enable it, forks never, a changed workflow file never (the
 * agent must not grade its own homework), attempts are bounded, and a failure whose fingerprint
 * repeats is not retried.
 */
export function decideAutofix(input: {
  autofix: boolean;
  maxAttempts: number;
  fork: boolean;
  workflowFilesChanged: readonly string[];
  previousAttempts: number;
  previousFingerprints: readonly string[];
  fingerprint: string;
  /** Checks that did not pass but did not fail either (cancelled, action required, stale, ...). */
  unfixable?: ReadonlyArray<{ name: string; conclusion: string }>;
}): AutofixDecision {
  if (!input.autofix)
    return { fix: false, why: 'CI follow-ups are off for this repository (`ci.autofix: false`).' };
  if (input.unfixable?.length) {
    const list = input.unfixable.map((c) => `\`${c.name}\` ended \`${c.conclusion}\``).join(', ');
    return { fix: false, why: `${list}, which a person must look at (only failed checks are auto-fixed).` };
  }
  if (input.fork) return { fix: false, why: 'the pull request comes from a fork.' };
  if (input.workflowFilesChanged.length > 0) {
    return {
      fix: false,
      why: `the branch changes CI workflow files (${input.workflowFilesChanged.join(', ')}), so a person must review the failure.`,
    };
  }
  if (input.previousFingerprints.includes(input.fingerprint)) {
    return { fix: false, why: 'the same failure came back after a follow-up already tried to fix it.' };
  }
  if (input.previousAttempts >= input.maxAttempts) {
    return {
      fix: false,
      why: `the limit of ${input.maxAttempts} CI follow-up attempts is reached (\`ci.max_attempts\`).`,
    };
  }
  return { fix: true, attempt: input.previousAttempts + 1 };
}

/**
 * A failure's fingerprint: the failing check names plus each one's first error, normalised so that
 * timestamps, hex ids, numbers and paths under temp dirs do not make the same failure look new.
 */
export function failureFingerprint(failures: readonly CiFailure[]): string {
  const parts = [...failures]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((f) => `${f.name}\u0000${normaliseError(firstError(f))}`);
  return createHash('sha256').update(parts.join('\u0001')).digest('hex').slice(0, 16);
}

/**
 * The first error a failure shows: its first specific annotation, else the first error-looking log
 * line. Actions adds "Process completed with exit code N." to every failed job; it says nothing
 * about which failure this is, so it is skipped.
 */
export function firstError(failure: CiFailure): string {
  const annotation = failure.annotations.find((a) => !GENERIC_ANNOTATION.test(a.message));
  if (annotation) return `${annotation.path}: ${annotation.message}`;
  const lines = failure.logTail.split('\n');
  const specific = lines.filter((l) => !GENERIC_ANNOTATION.test(l.replace(/^##\[error\]/, '')));
  return (
    specific.find((l) => /\b(error|failed|failure|exception|assert)/i.test(l)) ??
    lines.find((l) => l.trim()) ??
    ''
  );
}

const GENERIC_ANNOTATION = /^\s*Process completed with exit code \d+\.?\s*$/i;

function normaliseError(text: string): string {
  return text
    .replace(/^\S*\d{4}-\d\d-\d\dT[\d:.]+Z?\s*/gm, '')
    .replace(/\/tmp\/\S+/g, '<tmp>')
    .replace(/\b[0-9a-f]{7,40}\b/gi, '<hex>')
    .replace(/\d+(\.\d+)?/g, '<n>')
    .replace(/\s+/g, ' ')
    .trim()
    .toLowerCase();
}

/** Workflow files among a change's paths. */
export function workflowFiles(paths: readonly string[]): string[] {
  return paths.filter((p) => /^\.github\/workflows\/[^/]+\.ya?ml$/.test(p));
}

/** Keeps the end of a log, within `maxBytes`, starting at a line boundary. */
export function logTail(log: string, maxBytes = 8 * 1024): string {
  const withoutStamps = log.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /gm, '');
  const bytes = Buffer.from(withoutStamps);
  if (bytes.length <= maxBytes) return withoutStamps;
  // Cut by bytes, not characters: a log full of multi-byte text must still fit the cap.
  const tail = bytes
    .subarray(-maxBytes)
    .toString('utf8')
    .replace(/^\uFFFD+/, '');
  const cut = tail.indexOf('\n');
  return cut >= 0 ? tail.slice(cut + 1) : tail;
}
