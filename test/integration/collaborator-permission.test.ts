import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GitHubClient } from '../../src/github/github-client.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';

let gh: GitHubEmulator;
let installationId: number;
let client: GitHubClient;
let lines: string[];

beforeEach(async () => {
  gh = await startGitHubEmulator();
  await gh.createRepo('acme', 'widgets', { private: true });
  installationId = gh.installApp('acme');
  gh.addUser('dev');
  const logger = memoryLogger();
  lines = logger.lines;
  client = new GitHubClient(
    { appId: gh.app.id, privateKey: gh.app.privateKey, apiUrl: gh.apiUrl },
    logger.log,
    { retries: 0 },
  );
});
afterEach(async () => {
  await gh.close();
});

/** The next permission answer is `body`, as a GitHub answering otherwise would. */
const answer = (body: unknown) =>
  gh.failNext({ method: 'GET', path: /\/collaborators\/[^/]+\/permission$/ }, { status: 200, body });

describe('the collaborator permission that decides who may start work', () => {
  it('reads each role GitHub defines, and none for a person who is not a collaborator', async () => {
    for (const role of ['admin', 'maintain', 'write', 'triage', 'read'] as const) {
      gh.setPermission('acme/widgets', 'dev', role);
      expect(await client.permission(installationId, 'acme/widgets', 'dev')).toBe(role);
    }
    gh.setPermission('acme/widgets', 'dev', 'none');
    expect(await client.permission(installationId, 'acme/widgets', 'dev')).toBe('none');
    expect(await client.permission(installationId, 'acme/widgets', 'nobody')).toBe('none');
  });

  it('counts a custom role as the base level GitHub reports for it', async () => {
    answer({ permission: 'write', role_name: 'release-manager' });
    expect(await client.permission(installationId, 'acme/widgets', 'dev')).toBe('write');
  });

  it.each([
    ['a role that disagrees with permission none', { permission: 'none', role_name: 'write' }],
    ['a role above its permission', { permission: 'read', role_name: 'admin' }],
    ['an unknown permission', { permission: 'owner', role_name: 'owner' }],
    ['a permission that is not a string', { permission: 42, role_name: 'write' }],
    ['no permission at all', { role_name: 'admin' }],
    ['an empty body', null],
  ])('treats %s as no access, and says so in the log', async (_what, body) => {
    answer(body);
    expect(await client.permission(installationId, 'acme/widgets', 'dev')).toBe('none');
    expect(lines.join('\n')).toMatch(/collaborator permission not recognised: no access/);
  });
});
