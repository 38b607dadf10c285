// A writer of audit events with its own connection and event loop, as a second process would be
// (see test/unit/audit-chain-writers.test.ts): appends rounds of events to one task's chain, some
// with kept texts, some to a task of its own, some in transactions, then reports what it appended.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type StoreLocation } from '../../src/store/database.ts';

const { where, name, rounds, perRound } = workerData as {
  where: StoreLocation;
  name: string;
  rounds: number;
  perRound: number;
};
const store = await openStore(where);
const errors: string[] = [];
const audit = new AuditLog(store, systemClock, new SecretRedactor(), {
  groupCommit: { maxEvents: 32 },
  onError: (error) => errors.push(String(error)),
});
const marks: string[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < perRound; i++) {
      const mark = `${name}/${round}/${i}`;
      marks.push(mark);
      if (i % 4 === 0) audit.append('t', 'agent.event', { kind: 'message', text: mark });
      else audit.append('t', 'vm.exec', { argv: [mark] });
      if (i % 5 === 0) audit.append(`${name}-own`, 'vm.exec', { argv: [mark] });
    }
    if (round % 3 === 0) {
      const mark = `${name}/${round}/in-transaction`;
      marks.push(mark);
      await store.transaction(async () => audit.append('t', 'ci.verdict', { argv: [mark] }));
    }
    await nextTurn();
  }
  await audit.flush();
} catch (error) {
  errors.push(String(error));
} finally {
  await store.close();
}
parentPort?.postMessage({ marks, errors });
