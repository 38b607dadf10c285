import path from 'node:path';
import { AgentConfigError } from '../errors.ts';
import type { AgentAdapter } from './agent-adapter.ts';
import { clip } from './agent-event.ts';

/**
 * A script from the repository, run with bash in its root: deterministic automation and tests.
 * The prompt is on its stdin and in AIRLOCK_PROMPT_FILE; every line it prints (stdout or stderr)
 * is one of its messages.
 */
export const scriptAdapter: AgentAdapter = {
  name: 'script',
  stderrIsOutput: true,
  invocation(input) {
    if (!input.script)
      throw new AgentConfigError('`agent: script` needs `script:` in .github/airlock.yml', {
        hint: 'name a script inside the repository, e.g. script: scripts/agent.sh',
      });
    const normalized = path.posix.normalize(input.script);
    if (normalized.startsWith('..') || path.posix.isAbsolute(normalized)) {
      throw new AgentConfigError(`script ${input.script} must be a path inside the repository`);
    }
    return {
      argv: ['bash', input.script],
      env: { AIRLOCK_PROMPT_FILE: input.promptFile, AIRLOCK_TASK_ID: input.taskId },
      dirs: [],
      files: [],
      stdin: input.prompt,
    };
  },
  parser: () => ({
    line: (line) => (line.trim() ? [{ kind: 'message', role: 'assistant', text: clip(line) }] : []),
  }),
};
