// npm run bench -- <name> [args]: runs bench/<name>.ts with the pinned Node, which writes
// bench/results/<name>.json and prints its figures.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const [name, ...args] = process.argv.slice(2);
const names = ['webhooks', 'vm', 'proxy', 'task', 'audit', 'exec-audit', 'start', 'scale'];
if (!name || !names.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${names.join('|')}> [args]\n`);
  process.exit(2);
}
const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
if (!existsSync(file)) {
  process.stderr.write(`bench/${name}.ts does not exist yet\n`);
  process.exit(2);
}
const result = spawnSync(process.execPath, [file, ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
