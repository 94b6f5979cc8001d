/**
 * A part sink that holds the part in memory: for a server that must verify
 * a part before it sends any of it on (an HTTP gateway answering a request),
 * and for tests. Bounded: a part over `maxBytes` is refused before any byte
 * is read (such a server spools to a file with FilePartSink instead).
 */
import { sha256Hex } from "../hash/sha256.ts";
import type { PartSink } from "./part_reader.ts";

/** The largest part held in memory by default. */
export const MAX_MEMORY_PART_BYTES = 64 * 1024 * 1024;

export class MemoryPartSink implements PartSink {
  /** The part's bytes; those not written yet are zero. */
  readonly bytes: Uint8Array;
  /** The end of the last write: bytes [0, end) are what digest() hashes. */
  #end = 0;

  constructor(size: number, maxBytes: number = MAX_MEMORY_PART_BYTES) {
    if (!Number.isSafeInteger(size) || size < 0 || size > maxBytes) {
      throw new RangeError(`Cannot hold a part of ${size} bytes in memory (at most ${maxBytes})`);
    }
    this.bytes = new Uint8Array(size);
  }

  restart(offset: number): void {
    this.#end = Math.min(this.#end, offset);
  }

  write(offset: number, bytes: Uint8Array): Promise<void> {
    if (offset + bytes.length > this.bytes.length) {
      return Promise.reject(
        new RangeError(
          `Cannot write ${bytes.length} bytes at ${offset} of a ${this.bytes.length}-byte part`,
        ),
      );
    }
    this.bytes.set(bytes, offset);
    this.#end = offset + bytes.length;
    return Promise.resolve();
  }

  async digest(): Promise<{ digest: string; bytes: number }> {
    return { digest: await sha256Hex(this.bytes.subarray(0, this.#end)), bytes: this.#end };
  }
}
