import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeConversation } from '../../src/audit/retention.ts';
import type { Task } from '../../src/tasks/task.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { startWebWorld, type WebWorld } from '../helpers/web-world.ts';

let w: WebWorld;
let bob: string;
let opal: string;
const html = { accept: 'text/html' };
const page = async (p: string, cookie = bob) => (await w.get(p, { cookie, ...html })).text();

beforeAll(async () => {
  w = await startWebWorld({ operators: ['Opal'] });
  bob = await w.signIn('bob');
  opal = await w.signIn('opal');
});
afterAll(async () => {
  await w?.close();
});

/** Edits a stored event behind airlock's back, as someone with the database file could. */
async function tamper(taskId: string, seq: number): Promise<void> {
  await w.audit.flush(); // what airlock has committed is what someone with the database file can change
  w.db.exec('DROP TRIGGER IF EXISTS audit_events_append_only_update');
  w.db
    .prepare(`UPDATE audit_events SET data_json = '{"argv":["rm","-rf","/"]}' WHERE task_id = ? AND seq = ?`)
    .run(taskId, seq);
}

describe('verification on every page', () => {
  it('a clean task is verified on its page and in the list; a tampered one is broken at its event', async () => {
    const clean = await w.addAgentRun('acme/widgets', {
      agent: 'claude',
      fixture: 'claude-edit-run',
      title: 'Clean run',
    });
    const bad = await w.addAgentRun('acme/widgets', {
      agent: 'claude',
      fixture: 'claude-edit-run',
      title: 'Tampered run',
    });
    expect(await page(`/tasks/${clean.id}`)).toContain('data-verdict="verified"');
    await tamper(bad.id, 5);
    w.clock.advance(11 * 60_000);
    const badPage = await page(`/tasks/${bad.id}`);
    expect(badPage).toContain('data-verdict="broken"');
    expect(badPage).toContain('broken at event 5');
    expect(badPage).toContain('event 5 (vm.exec) was changed after it was written');
    const list = await page('/tasks');
    const row = (id: string) =>
      list.slice(
        list.indexOf(`<code>${id}</code>`),
        list.indexOf('</tr>', list.indexOf(`<code>${id}</code>`)),
      );
    expect(row(clean.id)).toContain('data-verdict="verified"');
    expect(row(bad.id)).toContain('data-verdict="broken"');
    const timeline = await page(`/tasks/${bad.id}/timeline`);
    expect(timeline).toMatch(
      /<tr id="e5" class="broken">[\s\S]*The chain breaks here: event 5 \(vm.exec\) was changed/,
    );
    const help = await (await w.get('/verified', html)).text();
    expect(help).toContain('What “verified” means');
  });

  it('flags exec-audit gaps as a warning, on the page and on the event', async () => {
    const task = await w.addTask('acme/widgets');
    w.audit.append(task.id, 'vm.exec_audit_incomplete', {
      reason: 'the guest did not answer the audit sync',
    });
    const body = await page(`/tasks/${task.id}`);
    expect(body).toContain('exec audit incomplete');
    expect(body).toContain('class="item tone-warning"');
    expect(await page(`/tasks/${task.id}/timeline`)).toContain('class="warning"');
  });
});

describe('the steps view', () => {
  it('shows a Claude Code run: prompt, tool calls with their command or path, exit code, edits linked to the diff, usage', async () => {
    const task = await w.addAgentRun('acme/widgets', {
      agent: 'claude',
      fixture: 'claude-edit-run',
      title: 'Say hello',
      summary: 'Wrote `notes.txt`.\n\n- one\n- two <script>alert(1)</script> @octocat',
    });
    const body = await page(`/tasks/${task.id}`);
    expect(body).toContain('<h1>Say hello</h1>');
    expect(body).toContain('The prompt as sent');
    expect(body).toMatch(
      /<span class="chip">Bash<\/span>[\s\S]*?<code class="cmd">cat notes.txt &amp;&amp; exit 3<\/code> <span class="exit exit-bad">exit 3<\/span>/,
    );
    expect(body).toMatch(
      /<span class="chip">Read<\/span>[\s\S]*?<code class="cmd">\/work\/repo\/a.txt<\/code>/,
    );
    expect(body).toContain('<a href="#diff-a.txt">a.txt</a>');
    expect(body).toContain('id="diff-a.txt"');
    expect(body).toContain('Model usage: 600 tokens in, 150 out, $0.0040');
    expect(body).toContain('Boot the VM and mint the token');
    // The agent's summary is untrusted markdown: formatted, escaped, no raw HTML.
    expect(body).toContain(
      '<p>Wrote <code>notes.txt</code>.</p><ul><li>one</li><li>two &lt;script&gt;alert(1)&lt;/script&gt; @octocat</li></ul>',
    );
    expect(body).not.toContain('<script>alert(1)');
  });

  it('shows a Codex run and a script run', async () => {
    const codex = await w.addAgentRun('acme/widgets', {
      agent: 'codex',
      fixture: 'codex-edit-run',
      title: 'Codex run',
    });
    const body = await page(`/tasks/${codex.id}`);
    expect(body).toMatch(
      /<span class="chip">shell<\/span>[\s\S]*?<code class="cmd">\/bin\/bash -lc &#39;cat a.txt &amp;&amp; echo ok&#39;<\/code> <span class="exit exit-ok">exit 0<\/span>/,
    );
    expect(body).toMatch(/<span class="chip">apply_patch<\/span>[\s\S]*?<a href="#diff-a.txt">a.txt<\/a>/);
    const script = await w.addAgentRun('acme/widgets', {
      agent: 'script',
      script: ['editing a.txt', 'done'],
      title: 'Script run',
    });
    expect(await page(`/tasks/${script.id}`)).toMatch(
      /<span class="chip">message<\/span>[\s\S]*?<p>editing a.txt<\/p>/,
    );
  });

  it('folds the guest’s wrapper records into airlock’s commands in the timeline', async () => {
    const task = await w.addAgentRun('acme/widgets', { agent: 'script', script: ['hi'], title: 'Folded' });
    const timeline = await page(`/tasks/${task.id}/timeline`);
    expect(timeline).toContain('<span class="chip chip-airlock">airlock</span> ran <code>git clone --quiet');
    // One row, not a second one for the same process.
    expect(timeline).not.toContain('<span class="chip">in VM</span> git clone');
    expect(timeline).not.toContain('<code>/usr/bin/choom');
  });
});

describe('task identity, time and words', () => {
  it('a manual purge says who purged and why, not the retention policy', async () => {
    const task = await w.addAgentRun('acme/widgets', {
      agent: 'claude',
      fixture: 'claude-edit-run',
      title: 'Purged',
    });
    await purgeConversation(
      { store: w.store, audit: w.audit, clock: w.clock },
      { olderThanDays: 0, taskId: task.id, reason: 'pasted a customer list', operator: 'alice' },
    );
    const body = await page(`/tasks/${task.id}/timeline`);
    expect(body).not.toContain('retention policy');
    expect(body).toContain('purged by alice: pasted a customer list');
  });

  it('a queued task, and then a failed one without a diff, say what is true', async () => {
    const queued = await w.tasks.create(
      newTaskInput({
        installationId: (await w.tasks.get((await w.addTask('acme/widgets')).id)).installationId,
        repoId: null,
        actorId: 101,
        triggerEvent: 'issues',
      }),
    );
    const body = await page(`/tasks/${queued.id}`);
    expect(body).toContain('Queued: this page updates when the task starts.');
    expect(body).not.toContain('Running');
    await w.tasks.transition(queued.id, 'failed', { reason: 'setup_failed: npm ci exited 1' });
    const failedBody = await page(`/tasks/${queued.id}`);
    expect(failedBody).not.toContain('(yet)');
    expect(failedBody).toContain('No diff: the task ended before any change was committed.');
  });

  it('lists title, outcome, PR and duration; marks a silence of more than ten minutes', async () => {
    const task = await w.addAgentRun('acme/widgets', {
      agent: 'script',
      script: ['hi'],
      title: 'Listed task',
      running: true,
    });
    w.clock.advance(12 * 60_000);
    w.audit.append(task.id, 'agent.event', { kind: 'message', role: 'assistant', text: 'back' });
    expect(await page(`/tasks/${task.id}`)).toContain('12 min 00 s with no events');
    const done = await w.addAgentRun('acme/widgets', {
      agent: 'script',
      script: ['hi'],
      title: 'Listed done',
    });
    const list = await page('/tasks');
    const row = list.slice(
      list.indexOf(`<code>${done.id}</code>`) - 600,
      list.indexOf('</tr>', list.indexOf(`<code>${done.id}</code>`)),
    );
    expect(row).toContain('Listed done');
    expect(row).toContain('changes pushed');
    expect(row).toMatch(
      /data-label="PR"><a href="http:\/\/127\.0\.0\.1:\d+\/acme\/widgets\/pull\/(\d+)">#\1<\/a>/,
    );
    expect(row).toMatch(/data-label="Took">\d+ s</);
  });
});

describe('local tasks', () => {
  let local: Task;
  beforeAll(async () => {
    local = await w.addLocalTask('Dana Dev');
  });

  it('an operator sees them, labelled local, with the git name as a name, not a login', async () => {
    const list = await page('/tasks', opal);
    expect(list).toContain(local.id);
    expect(list).toContain('<span class="badge">local</span>');
    expect(list).toContain('Dana Dev <span class="muted">(git author; local run)</span>');
    expect(list).not.toContain('@Dana Dev');
    const body = await page(`/tasks/${local.id}`, opal);
    expect(body).toContain('<h1>Tidy the notes</h1>');
    expect(body).not.toContain('@Dana Dev');
  });

  it('a person who is not an operator does not; the admin token does through the API', async () => {
    expect(await page('/tasks')).not.toContain(local.id);
    expect((await w.get(`/tasks/${local.id}`, { cookie: bob, ...html })).status).toBe(404);
    const api = await w.get(`/api/tasks/${local.id}`, { authorization: `Bearer ${w.adminToken}` });
    expect(api.status).toBe(200);
  });
});
