import type { AgentAdapter, AgentName } from './agent-adapter.ts';
import { claudeAdapter } from './claude-adapter.ts';
import { codexAdapter } from './codex-adapter.ts';
import { opencodeAdapter } from './opencode-adapter.ts';
import { scriptAdapter } from './script-adapter.ts';

const ADAPTERS: Record<AgentName, AgentAdapter> = {
  claude: claudeAdapter,
  codex: codexAdapter,
  opencode: opencodeAdapter,
  script: scriptAdapter,
};

/** The adapter for an agent named in `.github/airlock.yml`. */
export function agentAdapter(name: AgentName): AgentAdapter {
  return ADAPTERS[name];
}
