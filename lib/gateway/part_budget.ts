/**
 * A budget of bytes for parts held in memory, shared by every response of a
 * gateway: a part is read only once its bytes fit, and its bytes go back to
 * the budget once they are sent (or the response ends). With one part always
 * allowed when nothing else is held, a part larger than the whole budget still
 * goes through, one at a time. Waiters are served in order, so a response
 * waiting for a big part is not starved by small ones.
 */

export class PartBudget {
  readonly limitBytes: number;
  #used = 0;
  readonly #waiting: { bytes: number; grant: () => void; signal?: AbortSignal | undefined }[] = [];

  constructor(limitBytes: number) {
    if (!(limitBytes > 0)) {
      throw new RangeError(`A part budget must be positive, got ${limitBytes}`);
    }
    this.limitBytes = limitBytes;
  }

  get usedBytes(): number {
    return this.#used;
  }

  /** Resolves once `bytes` are taken from the budget; rejects when `signal` aborts first. */
  acquire(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#waiting.length === 0 && this.#fits(bytes)) {
      this.#used += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = { bytes, grant: () => resolve(), signal };
      this.#waiting.push(waiter);
      signal?.addEventListener("abort", () => {
        const at = this.#waiting.indexOf(waiter);
        if (at < 0) return;
        this.#waiting.splice(at, 1);
        reject(signal.reason);
        this.#grant();
      }, { once: true });
    });
  }

  /** Gives back bytes an acquire() took. */
  release(bytes: number): void {
    this.#used -= bytes;
    this.#grant();
  }

  #fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.limitBytes;
  }

  #grant(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0]!.bytes)) {
      const waiter = this.#waiting.shift()!;
      this.#used += waiter.bytes;
      waiter.grant();
    }
  }
}
