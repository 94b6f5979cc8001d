/**
 * A connection's replies on their way out. A client that sends several
 * requests before reading (fetch reads the parts of small files ahead, a
 * share of part.get requests per instance in one write) would otherwise get
 * one write, and one wake-up, per reply: while more requests wait in the
 * reader, small replies gather in one buffer and leave together. They leave
 * before the connection next waits to read (so a reply never waits on the
 * client), when the buffer would overflow, and before any larger write.
 */
import { closeQuietly, type Connection, withDeadline } from "./connection.ts";

/** Replies gathered at most before they are written (a few small parts' worth). */
export const GATHER_BYTES = 256 * 1024;

export class ReplyWriter implements Connection {
  readonly #conn: Connection;
  readonly #writeTimeoutMs: () => number;
  readonly #moreWaiting: () => boolean;
  #gathered: Uint8Array | undefined;
  #length = 0;
  #gathering = true;

  /**
   * `moreWaiting` says whether the client has sent bytes not read yet;
   * every write must make progress within `writeTimeoutMs()`, or the
   * connection is closed (a client that never reads must not hold it).
   */
  constructor(conn: Connection, writeTimeoutMs: () => number, moreWaiting: () => boolean) {
    this.#conn = conn;
    this.#writeTimeoutMs = writeTimeoutMs;
    this.#moreWaiting = moreWaiting;
  }

  /** Bytes gathered and not written yet. */
  get pending(): number {
    return this.#length;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    await this.flush();
    return await this.#conn.read(buffer);
  }

  async write(bytes: Uint8Array): Promise<number> {
    if (
      this.#gathering && bytes.length <= GATHER_BYTES - this.#length && this.#moreWaiting()
    ) {
      this.#gathered ??= new Uint8Array(GATHER_BYTES);
      this.#gathered.set(bytes, this.#length);
      this.#length += bytes.length;
      return bytes.length;
    }
    await this.flush();
    return await this.#write(bytes);
  }

  /** Writes what was gathered. */
  async flush(): Promise<void> {
    let done = 0;
    while (done < this.#length) {
      done += await this.#write(this.#gathered!.subarray(done, this.#length));
    }
    this.#length = 0;
  }

  /** Gathers no more: what is written from now on leaves at once (a last error frame). */
  stopGathering(): void {
    this.#gathering = false;
  }

  close(): void {
    this.#length = 0;
    this.#conn.close();
  }

  #write(bytes: Uint8Array): Promise<number> {
    return withDeadline(
      this.#conn.write(bytes),
      this.#writeTimeoutMs(),
      () => closeQuietly(this.#conn),
    );
  }
}
