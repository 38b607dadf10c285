import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** A build log holds at most this much; what comes later is dropped, and the log says so. */
const MAX_LOG_BYTES = 4 * 1024 * 1024;
/** The end of the log kept on the build's row (a failed build's comment quotes it). */
const TAIL_CHARS = 8 * 1024;

/**
 * An environment build's log: what its commands printed, in `$AIRLOCK_DATA_DIR/environment-builds/
 * <build>.log` (0600), capped; the last lines are kept in memory for the build's row.
 */
export class BuildLog {
  readonly #stream: WriteStream;
  #bytes = 0;
  #tail = '';
  #capped = false;
  #closed = false;

  private constructor(stream: WriteStream) {
    this.#stream = stream;
  }

  static file(dataDir: string, buildId: string): string {
    return path.join(dataDir, 'environment-builds', `${buildId}.log`);
  }

  static async open(dataDir: string, buildId: string): Promise<BuildLog> {
    const file = BuildLog.file(dataDir, buildId);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    return new BuildLog(createWriteStream(file, { flags: 'a', mode: 0o600 }));
  }

  /** The log as written so far ('' when there is none). */
  static read(dataDir: string, buildId: string): Promise<string> {
    return readFile(BuildLog.file(dataDir, buildId), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return '';
      throw error;
    });
  }

  write(text: string): void {
    this.#tail = (this.#tail + text).slice(-TAIL_CHARS);
    if (this.#capped || this.#closed) return;
    const bytes = Buffer.byteLength(text);
    if (this.#bytes + bytes > MAX_LOG_BYTES) {
      this.#capped = true;
      this.#stream.write(`\n[airlock: the log reached ${MAX_LOG_BYTES} bytes; the rest is not kept]\n`);
      return;
    }
    this.#bytes += bytes;
    this.#stream.write(text);
  }

  tail(): string {
    return this.#tail;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve, reject) => {
      this.#stream.end((error?: Error | null) => (error ? reject(error) : resolve()));
    });
  }
}
