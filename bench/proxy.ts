// npm run bench -- proxy [--files N] [--blobs N] [--blob-mib N] [--runs N] [--sse-events N] [--against DIR]
// Generates (once, cached under /tmp) a repository of about 20,000 files and 200 MB of history,
// serves it with the GitHub emulator, and measures in one run: clone and push direct against the
// same operations through a task proxy (running in its own process, as in production), the
// latency the proxy adds to SSE events, and the proxy's peak RSS and CPU time per phase and per
// clone. The proxy process gets airlock's own Node flags (src/process/node-flags.ts);
// BENCH_PROXY_NODE_ARGS adds more (e.g. "--cpu-prof --trace-gc").
// --against DIR also starts the task proxy of another checkout (e.g. `git worktree add DIR COMMIT`
// with node_modules copied in) and alternates its clones and pushes with this one's in the same
// run, so two versions are compared under the same load: on a shared machine the spread between
// separate runs is larger than the difference being looked for.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../src/process/node-flags.ts';
import { runProcess } from '../src/process/run-process.ts';
import { startGitHubEmulator } from '../test/emulator/index.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '20000' },
    blobs: { type: 'string', default: '8' },
    'blob-mib': { type: 'string', default: '24' },
    runs: { type: 'string', default: '5' },
    'sse-events': { type: 'string', default: '2000' },
    against: { type: 'string' },
    'serve-proxy': { type: 'boolean', default: false },
  },
});

if (values['serve-proxy']) await serveProxy();
else await bench();

/** Child mode: reads its settings (secrets included) from stdin, starts one task proxy. */
async function serveProxy(): Promise<void> {
  const { startTaskProxy } = await import('../src/proxy/task-proxy.ts');
  const { taskCredential } = await import('../src/github/task-token.ts');
  const { SecretRedactor } = await import('../src/secrets.ts');
  const { createLogger } = await import('../src/logger.ts');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const settings = JSON.parse(Buffer.concat(chunks).toString()) as {
    appId: number;
    privateKey: string;
    apiUrl: string;
    gitBase: string;
    installationId: number;
    modelUrl: string;
  };
  const redactor = new SecretRedactor();
  const log = createLogger({ level: 'warn', redactor, destination: process.stderr });
  const audit = { append: () => {} };
  const repository = { owner: 'bench', name: 'big' };
  const proxy = await startTaskProxy({
    taskId: 'bench',
    repository,
    branch: 'airlock/bench',
    listen: { tcp: true },
    gitUrl: (o, r) => `${settings.gitBase}/${o}/${r}.git`,
    credential: taskCredential(
      { appId: settings.appId, privateKey: settings.privateKey, baseUrl: settings.apiUrl, redactor, audit },
      { taskId: 'bench', installationId: settings.installationId, repository },
    ),
    models: { anthropic: { url: settings.modelUrl, apiKey: 'sk-ant-bench-0000000000000000' } },
    egressAllow: [],
    budgetTokens: Number.MAX_SAFE_INTEGER,
    onBudgetExceeded: () => {},
    maxPackBytes: 2 * 1024 ** 3,
    audit,
    log,
  });
  process.stdout.write(`${proxy.address}\n`);
  process.on('SIGTERM', () => {
    proxy.close().finally(() => process.exit(0));
  });
}

async function bench(): Promise<void> {
  const files = Number(values.files);
  const blobs = Number(values.blobs);
  const blobMib = Number(values['blob-mib']);
  const runs = Number(values.runs);
  const sseEvents = Number(values['sse-events']);
  const source = await generatedRepo(files, blobs, blobMib);

  const gh = await startGitHubEmulator();
  const work = await mkdtemp(path.join(tmpdir(), 'airlock-bench-proxy-'));
  const children: ChildProcess[] = [];
  const sse = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let sent = 0;
    const tick = () => {
      if (sent === sseEvents) return void res.end('event: message_stop\ndata: {"type":"message_stop"}\n\n');
      sent++;
      res.write(
        `event: content_block_delta\ndata: {"type":"content_block_delta","t":${performance.now()}}\n\n`,
      );
      setTimeout(tick, 1);
    };
    tick();
  });
  try {
    const repo = await gh.createRepo('bench', 'big');
    await rm(repo.dir, { recursive: true, force: true });
    await git(['clone', '--quiet', '--bare', '--local', source, repo.dir], work);
    await git(['--git-dir', repo.dir, 'config', 'http.receivepack', 'true'], work);
    await git(['--git-dir', repo.dir, 'config', 'core.bigFileThreshold', '8m'], work);
    const installationId = gh.installApp('bench');
    await new Promise<void>((resolve) => sse.listen(0, '127.0.0.1', resolve));
    const modelUrl = `http://127.0.0.1:${(sse.address() as AddressInfo).port}`;

    const settings = JSON.stringify({
      appId: gh.app.id,
      privateKey: gh.app.privateKey,
      apiUrl: gh.apiUrl,
      gitBase: gh.url,
      installationId,
      modelUrl,
    });
    const proxy = await startProxyChild(fileURLToPath(import.meta.url), settings);
    children.push(proxy.child);
    const against = values.against
      ? await startProxyChild(path.resolve(values.against, 'bench/proxy.ts'), settings)
      : undefined;
    if (against) children.push(against.child);
    const child = proxy.child;
    const proxyAddress = proxy.address;
    const phases: Record<string, unknown> = { start: await processStats(child.pid!) };
    const againstPhases: Record<string, unknown> = against
      ? { start: await processStats(against.child.pid!) }
      : {};
    const token = await mintDirectToken(gh.apiUrl, gh.app, installationId);
    const direct = gh.gitUrl('bench', 'big').replace('http://', `http://x-access-token:${token}@`);
    const proxied = `${proxyAddress}/git/bench/big.git`;

    // Clone: alternate direct and proxied so drift on a shared machine hits both alike; with
    // --against, the two proxies take turns going first.
    type Kind = 'direct' | 'proxy' | 'against';
    const urls: Record<Kind, string> = {
      direct,
      proxy: proxied,
      against: against ? `${against.address}/git/bench/big.git` : '',
    };
    const pids: Partial<Record<Kind, number>> = {
      proxy: child.pid!,
      ...(against ? { against: against.child.pid! } : {}),
    };
    const order = (i: number): Kind[] =>
      !against
        ? ['direct', 'proxy']
        : i % 2 === 0
          ? ['direct', 'proxy', 'against']
          : ['direct', 'against', 'proxy'];
    const clone: Record<Kind, number[]> = { direct: [], proxy: [], against: [] };
    const cloneCpu: Record<Kind, number[]> = { direct: [], proxy: [], against: [] };
    for (let i = 0; i < runs; i++) {
      for (const kind of order(i)) {
        const dir = path.join(work, `clone-${kind}-${i}`);
        const pid = pids[kind];
        const cpuBefore = pid ? (await processStats(pid)).cpu_s : 0;
        const started = performance.now();
        await git(['clone', '--quiet', '--no-checkout', urls[kind], dir], work);
        clone[kind].push(performance.now() - started);
        if (pid) cloneCpu[kind].push((await processStats(pid)).cpu_s - cpuBefore);
        process.stderr.write(`clone ${kind} ${round(clone[kind].at(-1)!, 0)} ms\n`);
        if (i < runs - 1 || kind !== 'proxy') await rm(dir, { recursive: true, force: true });
      }
    }

    phases.after_clones = await processStats(child.pid!);
    if (against) againstPhases.after_clones = await processStats(against.child.pid!);
    // Push: each run sends a new commit with a fresh random blob to the task branch.
    const pushDir = path.join(work, `clone-proxy-${runs - 1}`);
    const push: Record<Kind, number[]> = { direct: [], proxy: [], against: [] };
    for (let i = 0; i < runs; i++) {
      for (const kind of order(i)) {
        await writeFile(path.join(pushDir, 'push.bin'), randomBytes(blobMib * 1024 * 1024));
        await git(['add', 'push.bin'], pushDir);
        await git(['commit', '--quiet', '-m', `push ${kind} ${i}`], pushDir);
        const started = performance.now();
        await git(['push', '--quiet', '--force', urls[kind], 'HEAD:refs/heads/airlock/bench'], pushDir);
        push[kind].push(performance.now() - started);
        process.stderr.write(`push ${kind} ${round(push[kind].at(-1)!, 0)} ms\n`);
        await git(['reset', '--quiet', '--hard', 'HEAD~1'], pushDir);
      }
    }

    phases.after_pushes = await processStats(child.pid!);
    if (against) againstPhases.after_pushes = await processStats(against.child.pid!);
    // SSE: per-event delay from the upstream's write to the client's read, direct vs proxied.
    const sseDirect: number[] = [];
    const sseProxy: number[] = [];
    const sseAgainst: number[] = [];
    for (let i = 0; i < 2; i++) {
      sseDirect.push(...(await sseDelays(`${modelUrl}/v1/messages`)));
      sseProxy.push(...(await sseDelays(`${proxyAddress}/anthropic/v1/messages`)));
      if (against) sseAgainst.push(...(await sseDelays(`${against.address}/anthropic/v1/messages`)));
    }
    phases.after_sse = await processStats(child.pid!);
    if (against) againstPhases.after_sse = await processStats(against.child.pid!);
    const peak = (phases.after_sse as { peak_rss_mib: number }).peak_rss_mib;

    const cloneDirect = median(clone.direct);
    const cloneProxy = median(clone.proxy);
    writeResults('proxy', {
      repository: { files, blobs, blob_mib: blobMib, pack_mib: await packMib(repo.dir) },
      runs,
      clone_direct_ms: round(cloneDirect, 0),
      clone_proxy_ms: round(cloneProxy, 0),
      clone_ratio: round(cloneProxy / cloneDirect, 3),
      push_direct_ms: round(median(push.direct), 0),
      push_proxy_ms: round(median(push.proxy), 0),
      push_ratio: round(median(push.proxy) / median(push.direct), 3),
      // Each run clones (pushes) direct then proxied back to back; the median of those pairs'
      // ratios is less sensitive to load that drifts across the run than the ratio of medians.
      clone_pair_ratio_median: round(median(clone.proxy.map((p, i) => p / clone.direct[i]!)), 3),
      push_pair_ratio_median: round(median(push.proxy.map((p, i) => p / push.direct[i]!)), 3),
      sse_events: sseDirect.length,
      sse_direct_p50_ms: round(quantile(sseDirect, 0.5), 3),
      sse_direct_p99_ms: round(quantile(sseDirect, 0.99), 3),
      sse_proxy_p50_ms: round(quantile(sseProxy, 0.5), 3),
      sse_proxy_p99_ms: round(quantile(sseProxy, 0.99), 3),
      sse_added_latency_p99_ms: round(quantile(sseProxy, 0.99) - quantile(sseDirect, 0.99), 3),
      proxy_cpu_per_clone_s: round(median(cloneCpu.proxy), 3),
      proxy_rss_mib: peak,
      proxy_process: phases,
      ...(against
        ? {
            against: {
              tree: path.resolve(values.against!),
              clone_ms: round(median(clone.against), 0),
              clone_p95_ms: round(quantile(clone.against, 0.95), 0),
              clone_pair_ratio_median: round(median(clone.against.map((a, i) => a / clone.direct[i]!)), 3),
              push_ms: round(median(push.against), 0),
              push_pair_ratio_median: round(median(push.against.map((a, i) => a / push.direct[i]!)), 3),
              // This proxy against the other, run by run (above 1: this one is slower).
              clone_proxy_over_against_median: round(
                median(clone.proxy.map((p, i) => p / clone.against[i]!)),
                3,
              ),
              push_proxy_over_against_median: round(
                median(push.proxy.map((p, i) => p / push.against[i]!)),
                3,
              ),
              cpu_per_clone_s: round(median(cloneCpu.against), 3),
              sse_added_latency_p99_ms: round(quantile(sseAgainst, 0.99) - quantile(sseDirect, 0.99), 3),
              rss_mib: (againstPhases.after_sse as { peak_rss_mib: number }).peak_rss_mib,
              process: againstPhases,
            },
          }
        : {}),
      samples: { clone, push, clone_cpu_s: cloneCpu },
    });
  } finally {
    for (const child of children) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM'); // the proxy revokes its token on the way out
      await exited;
    }
    sse.closeAllConnections();
    sse.close();
    await gh.close();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Starts `script --serve-proxy` (this file, or the same file in another checkout) with airlock's
 * Node flags, hands it the settings on stdin and waits for the address it prints.
 */
async function startProxyChild(
  script: string,
  settings: string,
): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(
    process.execPath,
    [
      ...NODE_FLAGS,
      ...(process.env.BENCH_PROXY_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      script,
      '--serve-proxy',
    ],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    },
  );
  child.stdin!.end(settings);
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      // Node flags such as --trace-gc also write to stdout: the address is the line that is one.
      const address = /^http:\/\/\S+$/m.exec(out);
      if (address) resolve(address[0]);
      process.stderr.write(chunk); // keep the pipe drained: a full pipe would block the child
    });
    child.on('exit', (code) => reject(new Error(`proxy child ${script} exited with ${code}`)));
  });
  return { child, address };
}

/** The proxy child's CPU seconds so far and its resident and peak memory, in MiB. */
async function processStats(pid: number): Promise<{ cpu_s: number; rss_mib: number; peak_rss_mib: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  return {
    cpu_s: round((Number(stat[11]) + Number(stat[12])) / 100, 2),
    rss_mib: round(kib('VmRSS') / 1024, 1),
    peak_rss_mib: round(kib('VmHWM') / 1024, 1),
  };
}

/** Streams one SSE answer and returns each event's delay since the upstream wrote it, in ms. */
function sseDelays(url: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const delays: number[] = [];
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let pending = '';
      res.on('data', (chunk: Buffer) => {
        const now = performance.now();
        pending += chunk.toString();
        let end = pending.indexOf('\n\n');
        while (end >= 0) {
          const t = /"t":([\d.]+)/.exec(pending.slice(0, end));
          if (t) delays.push(now - Number(t[1]));
          pending = pending.slice(end + 2);
          end = pending.indexOf('\n\n');
        }
      });
      res.on('end', () => resolve(delays));
    });
    req.on('error', reject);
    req.end('{"stream":true}');
  });
}

async function git(args: string[], cwd: string) {
  return runProcess('git', args, {
    cwd,
    env: {
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'bench',
      GIT_AUTHOR_EMAIL: 'bench@example.invalid',
      GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@example.invalid',
    },
    timeoutMs: 30 * 60_000,
  });
}

async function mintDirectToken(
  apiUrl: string,
  app: { id: number; privateKey: string },
  installationId: number,
): Promise<string> {
  const { createAppAuth } = await import('@octokit/auth-app');
  const { Octokit } = await import('@octokit/rest');
  const auth = createAppAuth({
    appId: app.id,
    privateKey: app.privateKey,
    request: new Octokit({ baseUrl: apiUrl }).request,
  });
  const minted = await auth({
    type: 'installation',
    installationId,
    repositoryNames: ['big'],
    permissions: { contents: 'write' },
  });
  return minted.token;
}

async function packMib(gitDir: string): Promise<number> {
  const { stdout } = await git(['--git-dir', gitDir, 'count-objects', '-v'], tmpdir());
  const kib = Number(/size-pack: (\d+)/.exec(stdout)?.[1] ?? 0);
  return round(kib / 1024, 1);
}

/**
 * A bare repository of `files` small random files plus `blobs` commits that each add a
 * `blobMib` MiB random blob and touch 1% of the small files, built with git fast-import and cached
 * under /tmp by its parameters.
 */
async function generatedRepo(files: number, blobs: number, blobMib: number): Promise<string> {
  const dir = path.join(tmpdir(), `airlock-bench-repo-f${files}-b${blobs}x${blobMib}m.git`);
  if (existsSync(path.join(dir, 'airlock-bench-complete'))) return dir;
  process.stderr.write(`generating ${dir} …\n`);
  const building = `${dir}.building`;
  await rm(building, { recursive: true, force: true });
  await mkdir(building, { recursive: true });
  await git(['init', '--quiet', '--bare', '--initial-branch=main', building], tmpdir());
  const importer = spawn('git', ['--git-dir', building, 'fast-import', '--quiet'], {
    stdio: ['pipe', 'inherit', 'inherit'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1', HOME: tmpdir() },
  });
  const exited = new Promise<number | null>((resolve) => importer.on('exit', resolve));
  const write = (data: string | Buffer) =>
    importer.stdin.write(data)
      ? Promise.resolve()
      : new Promise<void>((r) => importer.stdin.once('drain', () => r()));
  const fileName = (i: number) => `src/m${i % 100}/f${i}.txt`;
  const small = () => randomBytes(600).toString('base64');
  let time = 1_767_225_600;
  const commit = async (message: string, body: Buffer[]) => {
    await write(`commit refs/heads/main\ncommitter bench <bench@example.invalid> ${time++} +0000\n`);
    await write(`data ${Buffer.byteLength(message)}\n${message}\n`);
    for (const part of body) await write(part);
  };
  const modify = (file: string, content: Buffer | string) => {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    return Buffer.concat([
      Buffer.from(`M 100644 inline ${file}\ndata ${bytes.length}\n`),
      bytes,
      Buffer.from('\n'),
    ]);
  };
  const initial: Buffer[] = [];
  for (let i = 0; i < files; i++) initial.push(modify(fileName(i), small()));
  await commit('Initial tree', initial);
  for (let b = 0; b < blobs; b++) {
    const body = [modify(`assets/blob-${b}.bin`, randomBytes(blobMib * 1024 * 1024))];
    for (let i = 0; i < files / 100; i++)
      body.push(modify(fileName(Math.floor(Math.random() * files)), small()));
    await commit(`Add blob ${b}`, body);
  }
  importer.stdin.end();
  if ((await exited) !== 0) throw new Error('git fast-import failed');
  await writeFile(path.join(building, 'airlock-bench-complete'), '');
  await rm(dir, { recursive: true, force: true });
  await rename(building, dir);
  return dir;
}
