import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import type { Task } from '../../src/tasks/task.ts';
import { authRoutes } from '../../src/web/auth-routes.ts';
import { emulatorOAuth } from '../emulator/routes-oauth.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { startWebWorld, type WebWorld } from '../helpers/web-world.ts';

let w: WebWorld;
let widgets: Task;
let widgetsRunning: Task;
let vault: Task;
const html = { accept: 'text/html' };

beforeAll(async () => {
  w = await startWebWorld({ accessCacheSeconds: 30, live: { recheckMs: 50, keepAliveMs: 50 } });
  widgets = await w.addTask('acme/widgets', { actor: 'alice' });
  widgetsRunning = await w.addTask('acme/widgets', { actor: 'bob', running: true });
  vault = await w.addTask('acme/vault', { actor: 'alice' });
});
afterAll(async () => {
  await w?.close();
});

const text = async (r: Response) => r.text();

describe('without signing in', () => {
  it('pages send the browser to sign in; exports, streams and the API answer 401', async () => {
    const page = await w.get(`/tasks/${widgets.id}`, html);
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe(
      `/login?return_to=${encodeURIComponent(`/tasks/${widgets.id}`)}`,
    );
    for (const p of [`/tasks/${widgets.id}/export.json`, `/tasks/${widgets.id}/live`, '/tasks']) {
      expect((await w.get(p)).status, p).toBe(401);
    }
    const api = await w.get('/api/tasks');
    expect(api.status).toBe(401);
    expect(await api.json()).toMatchObject({ error: 'unauthorized' });
    expect((await w.get('/api/tasks', { authorization: 'Bearer not-the-admin-token-at-all' })).status).toBe(
      401,
    );
  });

  it('a forged or foreign session cookie is no session', async () => {
    const forged = await w.get('/api/tasks', {
      cookie: 'airlock_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    });
    expect(forged.status).toBe(401);
    // A sign-in cookie (sealed for another purpose) is refused as a session.
    const start = await w.get('/login');
    const signIn = start.headers.getSetCookie()[0]!.split(';')[0]!.split('=')[1]!;
    expect((await w.get('/api/tasks', { cookie: `airlock_session=${signIn}` })).status).toBe(401);
  });
});

describe('signing in with GitHub', () => {
  it('checks the state parameter against the browser that started the sign-in', async () => {
    emulatorOAuth(w.emulator.state).signInAs('bob');
    const start = await w.get('/login');
    const cookie = start.headers.getSetCookie()[0]!.split(';')[0]!;
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.searchParams.get('client_id')).toBe(w.emulator.app.clientId);
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${w.url}/auth/github/callback`);
    const granted = await fetch(authorize, { redirect: 'manual' });
    const callback = new URL(granted.headers.get('location')!);
    const forgedState = new URL(callback);
    forgedState.searchParams.set('state', 'attacker-chosen-state-value-xx');
    const refused = await w.get(forgedState.pathname + forgedState.search, { cookie });
    expect(refused.status).toBe(400);
    expect(
      refused.headers
        .getSetCookie()
        .some((c) => c.startsWith('airlock_session=') && !c.startsWith('airlock_session=;')),
    ).toBe(false);
    const noCookie = await w.get(callback.pathname + callback.search);
    expect(noCookie.status).toBe(400);
    expect(await text(noCookie)).toContain('another browser');
  });

  it('a failed sign-in offers the sign-in link it mentions, back to where the person was going', async () => {
    const start = await w.get(`/login?return_to=${encodeURIComponent(`/tasks/${widgets.id}`)}`);
    const cookie = start.headers.getSetCookie()[0]!.split(';')[0]!;
    const forged = await w.get('/auth/github/callback?code=x&state=not-the-state-of-this-browser', {
      cookie,
    });
    expect(forged.status).toBe(400);
    const page = await text(forged);
    expect(page).toContain(
      `<a href="/login?return_to=${encodeURIComponent(`/tasks/${widgets.id}`)}">Sign in again</a>`,
    );
    const noCookie = await text(await w.get('/auth/github/callback?code=x&state=y'));
    expect(noCookie).toContain('<a href="/login">Sign in again</a>');
  });

  it('returns only to a path on this site', async () => {
    // Tab, newline and backslash are what a browser drops or turns into `/`: `/\t/evil.example`
    // is `//evil.example` to it.
    for (const returnTo of [
      '//evil.example/x',
      '/%09/evil.example',
      '/%0A/evil.example',
      '/%5C/evil.example',
      '/%252F/evil.example',
    ]) {
      const start = await w.get(`/login?return_to=${returnTo}`);
      const cookie = start.headers.getSetCookie()[0]!.split(';')[0]!;
      emulatorOAuth(w.emulator.state).signInAs('bob');
      const granted = await fetch(start.headers.get('location')!, { redirect: 'manual' });
      const callback = new URL(granted.headers.get('location')!);
      const done = await w.get(callback.pathname + callback.search, { cookie });
      expect(done.headers.get('location'), returnTo).toBe('/tasks');
    }
  });
});

describe('a person with read access to one repository', () => {
  let bob: string;
  beforeAll(async () => {
    bob = await w.signIn('bob');
  });

  it('lists that repository’s tasks only, and offers only it as a filter', async () => {
    const page = await text(await w.get('/tasks', { cookie: bob, ...html }));
    expect(page).toContain(widgets.id);
    expect(page).toContain(widgetsRunning.id);
    expect(page).not.toContain(vault.id);
    expect(page).not.toContain('acme/vault');
    const filtered = await text(await w.get('/tasks?repo=acme/vault', { cookie: bob, ...html }));
    expect(filtered).toContain('0 task(s)');
    expect(filtered).not.toContain(vault.id);
  });

  it('pages through the list, keeping the filters', async () => {
    const first = await text(await w.get('/tasks?repo=acme/widgets&per_page=1', { cookie: bob, ...html }));
    expect(first).toContain('2 task(s), page 1 of 2');
    expect(first).toContain('href="/tasks?repo=acme%2Fwidgets&amp;per_page=1&amp;page=2" rel="next"');
    const second = await text(
      await w.get('/tasks?repo=acme/widgets&per_page=1&page=2', { cookie: bob, ...html }),
    );
    expect(second).toContain('rel="prev"');
    const ids = [first, second].map((p) => [widgets.id, widgetsRunning.id].find((id) => p.includes(id)));
    expect(new Set(ids)).toEqual(new Set([widgets.id, widgetsRunning.id]));
    const api = (await (await w.get('/api/tasks?per_page=1&page=2', { cookie: bob })).json()) as {
      tasks: Task[];
      total: number;
      page: number;
    };
    expect(api).toMatchObject({ total: 2, page: 2 });
    expect(api.tasks).toHaveLength(1);
  });

  it('reads a task page with its steps, diff and links, and its audit timeline', async () => {
    const page = await text(await w.get(`/tasks/${widgets.id}`, { cookie: bob, ...html }));
    expect(page).toContain('refused CONNECT evil.example:443');
    expect(page).toContain('<span class="add">+# new acme/widgets</span>');
    expect(page).toContain(`href="${w.emulator.webUrl}/acme/widgets/issues/${widgets.issueNumber}"`);
    expect(page).toContain((await w.audit.headHash(widgets.id))!);
    const timeline = await text(await w.get(`/tasks/${widgets.id}/timeline`, { cookie: bob, ...html }));
    expect(timeline).toContain('<code>task.created</code>');
    expect(timeline).toContain('refused CONNECT evil.example:443');
  });

  it('gets the same 404 for another repository’s task as for a task that does not exist, by page, export, stream and API', async () => {
    const missing = 'zzzzzzzzzz';
    for (const [p, h] of [
      ['', html],
      ['/export.json', {}],
      ['/export.jsonl', {}],
      ['/live', {}],
    ] as const) {
      const hidden = await w.get(`/tasks/${vault.id}${p}`, { cookie: bob, ...h });
      const absent = await w.get(`/tasks/${missing}${p}`, { cookie: bob, ...h });
      expect([hidden.status, absent.status], p).toEqual([404, 404]);
      expect(await text(hidden), p).toBe(await text(absent));
    }
    for (const p of ['', '/events', '/export?format=jsonl', '/verify']) {
      const hidden = await w.get(`/api/tasks/${vault.id}${p}`, { cookie: bob });
      const absent = await w.get(`/api/tasks/${missing}${p}`, { cookie: bob });
      expect([hidden.status, absent.status], p).toEqual([404, 404]);
      expect(await text(hidden), p).toBe(await text(absent));
    }
  });

  it('the API lists and exports only readable records', async () => {
    const list = (await (await w.get('/api/tasks?per_page=100', { cookie: bob })).json()) as {
      tasks: Task[];
      total: number;
    };
    expect(list.tasks.map((t) => t.repoFullName).sort()).toEqual(['acme/widgets', 'acme/widgets']);
    expect(list.total).toBe(2);
    const jsonl = await text(await w.get(`/api/tasks/${widgets.id}/export?format=jsonl`, { cookie: bob }));
    const events = jsonl
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { taskId: string; seq: number });
    expect(new Set(events.map((e) => e.taskId))).toEqual(new Set([widgets.id]));
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  });

  it('the live stream carries only that task’s events', async () => {
    const controller = new AbortController();
    const after = (await w.audit.events(widgetsRunning.id)).length;
    const response = await fetch(`${w.url}/tasks/${widgetsRunning.id}/live?after=${after}`, {
      headers: { cookie: bob },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    w.audit.append(vault.id, 'vm.exec', { argv: ['cat', 'vault-secret-plans'] });
    w.audit.append(widgetsRunning.id, 'vm.exec', { argv: ['echo', 'widgets-visible'] });
    let seen = '';
    while (!seen.includes('widgets-visible')) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    controller.abort();
    expect(seen).toContain('widgets-visible');
    expect(seen).not.toContain('vault-secret-plans');
    expect(seen).toMatch(/^event: audit$/m);
    expect(seen).toContain(`id: ${after + 1}`);
  }, 10_000);
});

describe('a person without access', () => {
  it('sees nothing, by page or by API', async () => {
    const carol = await w.signIn('carol');
    const page = await text(await w.get('/tasks', { cookie: carol, ...html }));
    expect(page).toContain('0 task(s)');
    for (const t of [widgets, vault]) {
      expect((await w.get(`/tasks/${t.id}`, { cookie: carol, ...html })).status).toBe(404);
      expect((await w.get(`/api/tasks/${t.id}`, { cookie: carol })).status).toBe(404);
    }
    expect(await (await w.get('/api/tasks', { cookie: carol })).json()).toMatchObject({
      tasks: [],
      total: 0,
    });
  });

  it('loses access once GitHub stops granting it (after the cache time)', async () => {
    w.emulator.addUser('dave', { id: 104 });
    w.emulator.setPermission('acme/widgets', 'dave', 'read');
    const dave = await w.signIn('dave');
    expect((await w.get(`/tasks/${widgets.id}`, { cookie: dave, ...html })).status).toBe(200);
    w.emulator.setPermission('acme/widgets', 'dave', 'none');
    // Within the cache time the earlier answer stands (documented); after it GitHub is asked again.
    expect((await w.get(`/tasks/${widgets.id}`, { cookie: dave, ...html })).status).toBe(200);
    w.clock.advance(31_000);
    expect((await w.get(`/tasks/${widgets.id}`, { cookie: dave, ...html })).status).toBe(404);
  });

  it('is signed out when GitHub revokes the token', async () => {
    w.emulator.addUser('erin', { id: 105 });
    w.emulator.setPermission('acme/widgets', 'erin', 'read');
    const erin = await w.signIn('erin');
    emulatorOAuth(w.emulator.state).revokeTokens('erin');
    w.clock.advance(31_000);
    const page = await w.get('/tasks', { cookie: erin, ...html });
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toContain('/login');
    expect((await w.get('/api/tasks', { cookie: erin })).status).toBe(401);
  });
});

describe('the admin token', () => {
  it('sees every repository’s tasks through the API, and nothing through pages', async () => {
    const auth = { authorization: `Bearer ${w.adminToken}` };
    const list = (await (await w.get('/api/tasks', auth)).json()) as { total: number };
    expect(list.total).toBe(3);
    const one = (await (await w.get(`/api/tasks/${vault.id}`, auth)).json()) as {
      chain: { head_hash: string };
    };
    expect(one.chain.head_hash).toBe(await w.audit.headHash(vault.id));
    expect(await (await w.get(`/api/tasks/${vault.id}/verify`, auth)).json()).toMatchObject({ ok: true });
    expect((await w.get('/tasks', { ...auth, ...html })).status).toBe(302);
  });
});

describe('/metrics', () => {
  it('reports tasks by state and outcome, phases, proxy refusals and GitHub errors, with no repository names', async () => {
    w.emulator.failNext({ path: /^\/user\/installations\/\d+\/repositories$/ }, { status: 502 });
    w.clock.advance(31_000);
    const bob = await w.signIn('bob');
    const failed = await w.get('/tasks', { cookie: bob, ...html });
    expect(failed.status).toBe(502);
    expect(await text(failed)).toContain('nothing is shown');
    const body = await text(await w.get('/metrics'));
    expect(body).toMatch(/^airlock_tasks\{state="succeeded"\} 2$/m);
    expect(body).toMatch(/^airlock_tasks\{state="running"\} 1$/m);
    expect(body).toMatch(/^airlock_tasks_finished\{state="succeeded",outcome="none"\} 2$/m);
    expect(body).toMatch(/^airlock_proxy_refusals_total\{channel="egress"\} 3$/m);
    expect(body).toMatch(/^airlock_task_phase_seconds_count\{phase="starting"\} 3$/m);
    expect(body).toMatch(/^airlock_github_api_errors_total\{status="502"\} 1$/m);
    expect(body).not.toContain('acme/');
  });
});

describe('a long timeline', () => {
  let bob = '';
  beforeAll(async () => {
    bob = await w.signIn('bob');
  });

  it('pages a long timeline 500 events at a time, both ways', async () => {
    const long = await w.addTask('acme/widgets', { actor: 'bob' });
    for (let i = 0; i < 600; i++) w.audit.append(long.id, 'vm.exec', { argv: ['step', String(i)] });
    const count = (page: string) => (page.match(/<tr id="e\d+"/g) ?? []).length;
    const first = await text(await w.get(`/tasks/${long.id}/timeline`, { cookie: bob, ...html }));
    expect(count(first)).toBe(500);
    expect(first).toContain(`href="/tasks/${long.id}/timeline?after=500" rel="next"`);
    expect(first).not.toContain('rel="prev"');
    const second = await text(await w.get(`/tasks/${long.id}/timeline?after=500`, { cookie: bob, ...html }));
    expect(count(second)).toBe(608 - 500);
    expect(second).not.toContain('rel="next"');
    expect(second).toContain(`href="/tasks/${long.id}/timeline?before=501" rel="prev"`);
    const back = await text(await w.get(`/tasks/${long.id}/timeline?before=501`, { cookie: bob, ...html }));
    expect(count(back)).toBe(500);
    expect(back).toContain('<tr id="e1"');
    // The old address of page 2 still leads there.
    const old = await w.get(`/tasks/${long.id}?after=500`, { cookie: bob, ...html });
    expect(old.headers.get('location')).toBe(`/tasks/${long.id}/timeline?after=500`);
  });
});

// Moves the clock by hours: keep it after every test that uses a session signed in earlier.
describe('an expiring user token', () => {
  it('is renewed with its refresh token before it runs out, once for requests that arrive together', async () => {
    const cookie = await w.signIn('bob');
    const oauth = emulatorOAuth(w.emulator.state);
    const first = oauth.tokens.at(-1)!;
    expect(first.login).toBe('bob');
    // Nearly eight hours on (the sign-in lasts eight), and at GitHub the token no longer works.
    first.expiresAt = 0;
    w.clock.advance(8 * 3_600_000 - 4 * 60_000);
    const [page, api] = await Promise.all([
      await w.get('/tasks', { cookie, ...html }),
      await w.get('/api/tasks', { cookie }),
    ]);
    expect(page.status).toBe(200);
    expect(await text(page)).toContain(widgets.id);
    expect(api.status).toBe(200);
    expect(first.refreshSpent).toBe(true);
    // One renewal for both requests: GitHub's refresh tokens work once.
    const renewed = oauth.tokens.slice(oauth.tokens.indexOf(first) + 1);
    expect(renewed.map((t) => [t.login, t.refreshSpent])).toEqual([['bob', false]]);
    const newCookie = page.headers
      .getSetCookie()
      .find((c) => c.startsWith('airlock_session=') && !c.startsWith('airlock_session=;'))!
      .split(';')[0]!;
    expect(newCookie).not.toBe(cookie);
    expect(w.logLines.join('\n')).not.toContain(renewed[0]!.token);

    // The renewed sign-in keeps working; the old cookie's refresh token was spent, so it is signed out.
    w.clock.advance(90_000);
    expect((await w.get('/tasks', { cookie: newCookie, ...html })).status).toBe(200);
    const stale = await w.get('/tasks', { cookie, ...html });
    expect(stale.status).toBe(302);
    expect(stale.headers.get('location')).toMatch(/^\/login/);
  });
});

describe('sign-in that is not configured', () => {
  it('tells people plainly, and tells the operator in the log what to set', async () => {
    const { log, lines } = memoryLogger();
    const app = authRoutes({
      oauth: undefined,
      sealer: undefined,
      access: undefined,
      clock: systemClock,
      log,
      publicUrl: 'http://127.0.0.1:1',
      sessionHours: 8,
    });
    for (const path of ['/login', '/login?return_to=/tasks', '/auth/github/callback?code=x&state=y']) {
      const response = await app.request(path);
      expect(response.status, path).toBe(503);
      const page = await response.text();
      expect(page).toContain('Sign-in is not available');
      expect(page).toContain('The person who runs it');
      expect(page).not.toMatch(/GITHUB_CLIENT|AIRLOCK_SESSION|environment|restart/);
      // No link back to sign-in: it would only lead here again.
      expect(page).not.toContain('href="/login');
    }
    const told = lines.filter((l) => l.includes('sign-in is not configured'));
    expect(told).toHaveLength(1);
    expect(told[0]).toContain('GITHUB_CLIENT_ID');
    expect(told[0]).toContain('AIRLOCK_SESSION_SECRET');
  });
});
