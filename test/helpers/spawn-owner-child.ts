// Starts one long-running child through spawnProcess and prints its pid, then waits to be killed
// (for the test that a child started with dieWithOwner dies with its owner).
import { spawnProcess } from '../../src/process/spawn-process.ts';

const dieWithOwner = process.argv[2] === 'die-with-owner';
const child = await spawnProcess('sleep', ['600'], { detached: true, dieWithOwner });
process.stdout.write(`${JSON.stringify({ pid: child.pid })}\n`);
setInterval(() => {}, 1000);
