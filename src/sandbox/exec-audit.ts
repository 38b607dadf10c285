/** One process executed inside a guest, as reported by the guest's init before anything else ran. */
export interface ExecAuditRecord {
  ts: string;
  pid: number | null;
  ppid: number | null;
  argv: string[];
  cwd: string | null;
  uid: number | null;
}
