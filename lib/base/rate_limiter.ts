import { deadline } from "./deadline.ts";

/** At most this long between two chunks of one stream sharing a limiter (see chunkFor). */
const CHUNK_GAP_SECONDS = 4;
/** Smaller chunks cost more in syscalls than the rate is worth. */
const MIN_CHUNK_BYTES = 64;

/**
 * A token bucket shared by every stream of one transfer: `take(n)` resolves
 * when n more bytes may pass without exceeding `bytesPerSecond` on average.
 */
export class RateLimiter {
  readonly bytesPerSecond: number;
  /** Bytes that may pass in one burst. */
  readonly burstBytes: number;
  #tokens: number;
  #last = performance.now();

  constructor(bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`Rate must be positive, got ${bytesPerSecond}`);
    this.bytesPerSecond = bytesPerSecond;
    this.burstBytes = Math.max(16 * 1024, Math.floor(bytesPerSecond / 10));
    this.#tokens = this.burstBytes;
  }

  /** The largest read that keeps the flow smooth at this rate. */
  get chunkBytes(): number {
    return this.burstBytes;
  }

  /**
   * The largest chunk for each of `streams` sharing this rate such that each
   * sends one at least every CHUNK_GAP_SECONDS: a receiver that hears
   * nothing for longer (an instance's 10 s per request) gives up on it.
   */
  chunkFor(streams: number): number {
    const share = Math.floor((this.bytesPerSecond * CHUNK_GAP_SECONDS) / Math.max(1, streams));
    return Math.min(this.burstBytes, Math.max(MIN_CHUNK_BYTES, share));
  }

  /** Waits until `bytes` more may pass; rejects with `signal`'s reason once it aborts. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    this.#tokens = Math.min(
      this.burstBytes,
      this.#tokens + ((now - this.#last) / 1000) * this.bytesPerSecond,
    );
    this.#last = now;
    this.#tokens -= bytes;
    if (this.#tokens < 0) {
      signal?.throwIfAborted();
      const waitMs = (-this.#tokens / this.bytesPerSecond) * 1000;
      // A slow rate may mean minutes for one large part: Ctrl-C must not wait them out.
      await new Promise<void>((resolve, reject) => {
        const abort = () => {
          cancel();
          reject(signal!.reason);
        };
        const cancel = deadline(waitMs, () => {
          signal?.removeEventListener("abort", abort);
          resolve();
        });
        signal?.addEventListener("abort", abort, { once: true });
      });
    }
  }
}
