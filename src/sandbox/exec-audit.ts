/** One process executed inside a guest, as reported by the guest's init before anything else ran. */
export interface ExecAuditRecord {
  ts: string;
  pid: number | null;
  ppid: number | null;
  argv: string[];
  cwd: string | null;
  uid: number | null;
}

/**
 * Exec records that did not reach the task's record, counted: `lost` inside the guest (a gap in
 * the kernel's audit serial numbers), or `dropped` by the host because the guest sent more than
 * its rate allows.
 */
export type ExecAuditLoss =
  | {
      kind: 'lost';
      reason: 'serial_gap';
      records: number;
      firstSerial?: number | undefined;
      lastSerial?: number | undefined;
    }
  | { kind: 'dropped'; records: number; from: string; to: string; perSecond: number; burst: number };
