// Boots one VM and prints its VMM pid, then waits to be killed (for the reaper test).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import { memoryLogger } from './memory-logger.ts';
import { testVmImage } from './vm-image.ts';

const dataDir = process.argv[2]!;
const sandbox = new MicroVmSandbox({
  image: testVmImage(),
  accel: 'tcg',
  dataDir,
  log: memoryLogger().log,
  tscKhz: hostTscKhz(),
});
const vm = await sandbox.create({
  taskId: 'orphan',
  cpus: 1,
  memoryMib: 256,
  diskMib: 64,
  outputLimitBytes: 1e6,
});
const record = JSON.parse(readFileSync(path.join(dataDir, 'vms', vm.id, 'vm.json'), 'utf8'));
process.stdout.write(`${JSON.stringify({ pid: record.pid, vmId: vm.id })}\n`);
setInterval(() => {}, 1000);
