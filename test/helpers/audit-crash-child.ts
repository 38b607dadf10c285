// Appends audit events with group commit, as the control plane does, until it is killed.
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore } from '../../src/store/database.ts';

const store = await openStore({ file: process.env.DB_FILE! });
const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
let n = 0;
let told = false;
const burst = async () => {
  for (let i = 0; i < 50; i++) {
    n++;
    audit.append(`task-${n % 5}`, n % 3 ? 'vm.exec' : 'agent.event', {
      argv: ['step', String(n)],
      kind: 'message',
      text: `line ${n}`,
    });
  }
  if (!told && n >= 5_000) {
    told = true;
    // The parent kills from this line on, so what it may expect to find must be committed first;
    // the appends after it are group-committed as before.
    await audit.flush();
    process.stdout.write(`committed ${n}\n`);
  }
  setImmediate(burst);
};
void burst();
