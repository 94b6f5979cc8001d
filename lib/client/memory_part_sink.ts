/**
 * A part sink that holds the part in memory: for a server that must verify
 * a part before it sends any of it on (an HTTP gateway answering a request),
 * and for tests. Bounded: a part over `maxBytes` is refused before any byte
 * is read (such a server spools to a file with FilePartSink instead).
 */
import { sha256HereHex, sha256Hex } from "../hash/sha256.ts";
import { type Xxh128, xxh128IfAvailable } from "../hash/xxh128.ts";
import type { PartSink } from "./part_reader.ts";

/**
 * Parts up to this size are hashed on this thread (libcrypto where it loads):
 * handing a few kilobytes to a thread and back costs more than hashing them.
 */
const HASH_HERE_MAX_BYTES = 64 * 1024;

/** One hasher for every sink's quickDigest(), which hashes in one go; null when none can run. */
let _quick: Xxh128 | null | undefined;

/** The largest part held in memory by default. */
export const MAX_MEMORY_PART_BYTES = 64 * 1024 * 1024;

export class MemoryPartSink implements PartSink {
  /** The part's bytes; those not written yet are zero. */
  readonly bytes: Uint8Array;
  /** The end of the last write: bytes [0, end) are what digest() hashes. */
  #end = 0;

  /** `into`, when given, holds the part (its length is the part's size). */
  constructor(size: number, maxBytes: number = MAX_MEMORY_PART_BYTES, into?: Uint8Array) {
    if (!Number.isSafeInteger(size) || size < 0 || size > maxBytes) {
      throw new RangeError(`Cannot hold a part of ${size} bytes in memory (at most ${maxBytes})`);
    }
    if (into !== undefined && into.length !== size) {
      throw new RangeError(`A part of ${size} bytes cannot be held in ${into.length}`);
    }
    this.bytes = into ?? new Uint8Array(size);
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
    // Bytes received straight into place (receiveInto) are there already.
    if (bytes.buffer !== this.bytes.buffer || bytes.byteOffset !== this.bytes.byteOffset + offset) {
      this.bytes.set(bytes, offset);
    }
    this.#end = offset + bytes.length;
    return Promise.resolve();
  }

  receiveInto(offset: number, length: number): Uint8Array {
    return this.bytes.subarray(offset, offset + length);
  }

  /** XXH3-128 of bytes [0, end), held in place; undefined where it cannot be computed. */
  quickDigest(): { digest: string; bytes: number } | undefined {
    if (_quick === undefined) _quick = xxh128IfAvailable() ?? null;
    if (_quick === null) return undefined;
    const held = this.bytes.subarray(0, this.#end);
    return { digest: _quick.reset().update(held).digest(), bytes: this.#end };
  }

  async digest(): Promise<{ digest: string; bytes: number }> {
    const held = this.bytes.subarray(0, this.#end);
    const digest = (held.length <= HASH_HERE_MAX_BYTES ? sha256HereHex(held) : undefined) ??
      await sha256Hex(held);
    return { digest, bytes: this.#end };
  }
}
