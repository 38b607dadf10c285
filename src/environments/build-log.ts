import type { Store } from '../store/database.ts';

/** A build log holds at most this much; what comes later is dropped, and the log says so. */
const MAX_LOG_BYTES = 4 * 1024 * 1024;
/** The end of the log kept on the build's row (a failed build's comment quotes it). */
const TAIL_CHARS = 8 * 1024;
/** Output is written to the database at most this often, or once this much has gathered. */
const FLUSH_MS = 500;
const FLUSH_BYTES = 64 * 1024;

/**
 * An environment build's log: what its commands printed, capped, in the database
 * (`environment_build_logs`, one row per chunk), so that the web UI of whichever process serves
 * it shows the log while the build runs on a worker elsewhere. The last lines are kept in memory
 * for the build's row.
 */
export class BuildLog {
  readonly #store: Store;
  readonly #buildId: string;
  #pending = '';
  #seq = 0;
  #bytes = 0;
  #tail = '';
  #capped = false;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Writes in flight, one after another (chunks keep their order). */
  #written: Promise<void> = Promise.resolve();
  #failure: unknown;

  private constructor(store: Store, buildId: string, seq: number) {
    this.#store = store;
    this.#buildId = buildId;
    this.#seq = seq;
  }

  /** Opens a build's log for writing (after what an earlier attempt wrote, if any). */
  static async open(store: Store, buildId: string): Promise<BuildLog> {
    const last = await store.db
      .selectFrom('environment_build_logs')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('build_id', '=', buildId)
      .executeTakeFirst();
    return new BuildLog(store, buildId, Number(last?.seq ?? -1) + 1);
  }

  /** The log as written so far ('' when there is none). */
  static async read(store: Store, buildId: string): Promise<string> {
    const rows = await store.db
      .selectFrom('environment_build_logs')
      .select('chunk')
      .where('build_id', '=', buildId)
      .orderBy('seq')
      .execute();
    return rows.map((r) => r.chunk).join('');
  }

  write(text: string): void {
    this.#tail = (this.#tail + text).slice(-TAIL_CHARS);
    if (this.#capped || this.#closed) return;
    const bytes = Buffer.byteLength(text);
    if (this.#bytes + bytes > MAX_LOG_BYTES) {
      this.#capped = true;
      this.#pending += `\n[airlock: the log reached ${MAX_LOG_BYTES} bytes; the rest is not kept]\n`;
      this.#flush();
      return;
    }
    this.#bytes += bytes;
    this.#pending += text;
    if (this.#pending.length >= FLUSH_BYTES) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  tail(): string {
    return this.#tail;
  }

  /** Writes what is pending; rejects if any chunk could not be stored. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#flush();
    }
    await this.#written;
    if (this.#failure) throw this.#failure;
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#pending) return;
    const chunk = this.#pending;
    const seq = this.#seq++;
    this.#pending = '';
    this.#written = this.#written.then(() =>
      this.#store.db
        .insertInto('environment_build_logs')
        .values({ build_id: this.#buildId, seq, chunk })
        .execute()
        .then(
          () => undefined,
          (error: unknown) => {
            this.#failure ??= error;
          },
        ),
    );
  }
}
