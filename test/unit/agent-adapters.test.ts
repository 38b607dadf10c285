import { describe, expect, it } from 'vitest';
import { type AgentRunInput, PLACEHOLDER_API_KEY } from '../../src/agents/agent-adapter.ts';
import { agentAdapter } from '../../src/agents/agent-registry.ts';
import { AgentConfigError } from '../../src/errors.ts';

const input: AgentRunInput = {
  prompt: 'Make the greeting friendlier.',
  promptFile: '/work/prompt.md',
  repoDir: '/work/repo',
  homeDir: '/home/agent',
  proxyUrl: 'http://10.0.2.100',
  taskId: 'tsk_1',
};

describe('agent invocations', () => {
  it('points codex at the proxy as its only provider, with a placeholder key and the prompt on stdin', () => {
    const run = agentAdapter('codex').invocation({ ...input, model: 'gpt-5.5' });
    expect(run.argv).toContain('exec');
    expect(run.argv).toContain('--json');
    expect(run.argv.at(-1)).toBe('-');
    expect(run.argv.join(' ')).not.toContain(input.prompt);
    expect(run.stdin).toBe(input.prompt);
    expect(run.env).toMatchObject({ OPENAI_API_KEY: PLACEHOLDER_API_KEY, CODEX_HOME: '/home/agent/.codex' });
    expect(run.dirs).toEqual(['/home/agent/.codex']);
    const config = run.files.find((f) => f.path === '/home/agent/.codex/config.toml')!.content;
    expect(config).toContain('model_provider = "airlock"');
    expect(config).toContain('model = "gpt-5.5"');
    expect(config).toContain('base_url = "http://10.0.2.100/openai/v1"');
    expect(config).toContain('wire_api = "responses"');
  });

  it('leaves the model to codex when none is configured, and quotes odd model names as TOML strings', () => {
    expect(agentAdapter('codex').invocation(input).files[0]!.content).not.toMatch(/^model =/m);
    const config = agentAdapter('codex').invocation({ ...input, model: 'we"ird\\name' }).files[0]!.content;
    expect(config).toContain('model = "we\\"ird\\\\name"');
  });

  it('points claude at the proxy by environment', () => {
    const run = agentAdapter('claude').invocation({ ...input, model: 'claude-sonnet-4-5' });
    expect(run.argv).toEqual(expect.arrayContaining(['-p', '--output-format', 'stream-json', '--verbose']));
    expect(run.argv.slice(-2)).toEqual(['--model', 'claude-sonnet-4-5']);
    expect(run.env).toMatchObject({
      ANTHROPIC_BASE_URL: 'http://10.0.2.100/anthropic',
      ANTHROPIC_API_KEY: PLACEHOLDER_API_KEY,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    });
    expect(run.stdin).toBe(input.prompt);
  });

  it('points opencode at the proxy for both providers and wants provider/model names', () => {
    const run = agentAdapter('opencode').invocation({ ...input, model: 'anthropic/claude-sonnet-4-5' });
    expect(run.argv.slice(1)).toEqual(['run', '--format', 'json', '--dangerously-skip-permissions']);
    const config = JSON.parse(run.files[0]!.content);
    expect(config.model).toBe('anthropic/claude-sonnet-4-5');
    expect(config.provider.anthropic.options).toEqual({
      baseURL: 'http://10.0.2.100/anthropic/v1',
      apiKey: PLACEHOLDER_API_KEY,
    });
    expect(config.provider.openai.options.baseURL).toBe('http://10.0.2.100/openai/v1');
    expect(run.env.OPENCODE_CONFIG).toBe(run.files[0]!.path);
    expect(() => agentAdapter('opencode').invocation({ ...input, model: 'gpt-5.5' })).toThrow(
      AgentConfigError,
    );
  });

  it('runs a script from inside the repository only', () => {
    const run = agentAdapter('script').invocation({ ...input, script: 'scripts/agent.sh' });
    expect(run.argv).toEqual(['bash', 'scripts/agent.sh']);
    expect(run.env).toEqual({ AIRLOCK_PROMPT_FILE: '/work/prompt.md', AIRLOCK_TASK_ID: 'tsk_1' });
    expect(() => agentAdapter('script').invocation(input)).toThrow(/needs `script:`/);
    for (const script of ['../outside.sh', '/etc/passwd', 'scripts/../../outside.sh']) {
      expect(() => agentAdapter('script').invocation({ ...input, script })).toThrow(AgentConfigError);
    }
  });

  it('passes no real credential anywhere: only the placeholder', () => {
    for (const name of ['codex', 'claude', 'opencode'] as const) {
      const run = agentAdapter(name).invocation(input);
      const everything = JSON.stringify(run);
      // Key-like fields in the environment and in config files (whose quotes are escaped here).
      const keys = everything.match(/\\?"\w*(KEY|TOKEN|apiKey)\w*\\?":\s*\\?"[^"\\]*/g) ?? [];
      expect(keys.length, name).toBeGreaterThan(0);
      for (const key of keys) expect(key).toContain(PLACEHOLDER_API_KEY);
    }
  });
});
