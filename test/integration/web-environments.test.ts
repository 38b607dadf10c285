import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { startWebWorld, type WebWorld } from '../helpers/web-world.ts';

let w: WebWorld;
beforeEach(async () => {
  w = await startWebWorld();
});
afterEach(async () => {
  await w.close();
});

/** A failed build of a repository, with its log and the start of its record, as a build leaves them. */
async function failedBuild(repo: string, log: string) {
  const build = await w.environments.createBuild({
    repoFullName: repo,
    repoId: w.emulator.state.repos.get(repo)?.id ?? null,
    installationId: 1,
    trigger: { kind: 'command', by: 'alice', issueNumber: 3 },
    config: DEFAULT_REPO_CONFIG,
  });
  w.audit.append(build.id, 'build.created', { repository: repo });
  await w.environments.startBuild(build.id);
  const output = await w.environments.openLog(build.id);
  output.write(log);
  await output.close();
  await w.environments.failBuild(build.id, 'setup `npm ci` failed (exit 1)', log);
  w.audit.append(build.id, 'build.outcome', { state: 'failed' });
  return build;
}

describe('environment pages', () => {
  it('show a build, its log and its record to people who can read its repository, and no one else', async () => {
    // A person's access is asked about the installations tasks were recorded under.
    await w.addTask('acme/widgets');
    const widgets = await failedBuild(
      'acme/widgets',
      '$ setup `npm ci`\n<script>alert(1)</script> npm ERR! 404\n',
    );
    const vault = await failedBuild('acme/vault', 'secret vault output\n');

    const bob = await w.signIn('bob');
    const list = await (await w.get('/environments', { cookie: bob })).text();
    expect(list).toContain(`/environments/builds/${widgets.id}`);
    expect(list).not.toContain(vault.id);

    const page = await w.get(`/environments/builds/${widgets.id}`, { cookie: bob });
    expect(page.status).toBe(200);
    const text = await page.text();
    expect(text).toContain('setup `npm ci` failed (exit 1)');
    expect(text).toContain('&lt;script&gt;alert(1)&lt;/script&gt; npm ERR! 404');
    expect(text).toContain('2 events, chain verified');
    expect(text).toContain('build.outcome');

    const hidden = await w.get(`/environments/builds/${vault.id}`, { cookie: bob });
    expect(hidden.status).toBe(404);
    expect(await hidden.text()).not.toContain('secret vault output');
    expect((await w.get(`/environments/builds/${widgets.id}`)).status).toBe(401);
  });

  it('names the worker a build ran on, and shows the log it is writing', async () => {
    await w.addTask('acme/widgets');
    const build = await w.environments.createBuild({
      repoFullName: 'acme/widgets',
      repoId: w.emulator.state.repos.get('acme/widgets')?.id ?? null,
      installationId: 1,
      trigger: { kind: 'push', by: 'alice' },
      config: DEFAULT_REPO_CONFIG,
      host: null,
    });
    await w.environments.forHost('worker-a').startBuild(build.id);
    // Still running: what it printed so far is on the page.
    const output = await w.environments.openLog(build.id);
    output.write('$ setup `npm ci`\nadded 3 packages\n');
    await output.close();

    const bob = await w.signIn('bob');
    const list = await (await w.get('/environments', { cookie: bob })).text();
    expect(list).toContain('on worker-a');
    const text = await (await w.get(`/environments/builds/${build.id}`, { cookie: bob })).text();
    expect(text).toContain('<dt>Worker</dt><dd>worker-a</dd>');
    expect(text).toContain('added 3 packages');
  });
});
