/**
 * A budget of bytes for parts held in memory, shared by every response of a
 * gateway: a part is read only once its bytes fit, and its bytes go back to
 * the budget once they are sent (or the response ends). With one part always
 * allowed when nothing else is held, a part larger than the whole budget still
 * goes through, one at a time. Waiters are served in order, so a response
 * waiting for a big part is not starved by small ones.
 *
 * Each client address may hold at most a share of the budget (half, by
 * default; again one part whatever its size when it holds nothing): a
 * review's 40 connections from one address that read slowly held all of it,
 * and every other client's download waited with no answer. A waiter over its
 * address's share waits without holding up the others behind it.
 */

/** What one client may take: acquire and release against its address's share. */
export interface BudgetShare {
  acquire(bytes: number, signal?: AbortSignal): Promise<void>;
  release(bytes: number): void;
}

interface _Waiter {
  bytes: number;
  owner: string;
  grant: () => void;
}

/** The part of the budget one client address may hold, by default. */
export const DEFAULT_SHARE_PER_ADDRESS = 0.5;

export class PartBudget {
  readonly limitBytes: number;
  /** The most one owner (client address) may hold. */
  readonly ownerLimitBytes: number;
  #used = 0;
  readonly #usedBy = new Map<string, number>();
  readonly #waiting: _Waiter[] = [];

  constructor(limitBytes: number, sharePerOwner = DEFAULT_SHARE_PER_ADDRESS) {
    if (!(limitBytes > 0)) {
      throw new RangeError(`A part budget must be positive, got ${limitBytes}`);
    }
    this.limitBytes = limitBytes;
    this.ownerLimitBytes = Math.max(1, Math.floor(limitBytes * sharePerOwner));
  }

  get usedBytes(): number {
    return this.#used;
  }

  /** The budget as one owner (a client's address) takes from it. */
  share(owner: string): BudgetShare {
    return {
      acquire: (bytes, signal) => this.acquire(bytes, signal, owner),
      release: (bytes) => this.release(bytes, owner),
    };
  }

  /**
   * Resolves once `bytes` are taken from the budget (within `owner`'s share;
   * "" has no share of its own); rejects when `signal` aborts first.
   */
  acquire(bytes: number, signal?: AbortSignal, owner = ""): Promise<void> {
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const waiter = { bytes, owner, grant: () => resolve() };
      this.#waiting.push(waiter);
      this.#grant();
      if (!this.#waiting.includes(waiter)) return;
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
  release(bytes: number, owner = ""): void {
    this.#used -= bytes;
    const left = (this.#usedBy.get(owner) ?? 0) - bytes;
    if (left > 0) this.#usedBy.set(owner, left);
    else this.#usedBy.delete(owner);
    this.#grant();
  }

  #grant(): void {
    for (let i = 0; i < this.#waiting.length;) {
      const { bytes, owner, grant } = this.#waiting[i]!;
      const held = this.#usedBy.get(owner) ?? 0;
      if (owner !== "" && held > 0 && held + bytes > this.ownerLimitBytes) {
        // Over its address's share: others behind it go first.
        i++;
        continue;
      }
      // In order: the first that does not fit the whole budget holds up the rest.
      if (this.#used > 0 && this.#used + bytes > this.limitBytes) return;
      this.#waiting.splice(i, 1);
      this.#used += bytes;
      this.#usedBy.set(owner, held + bytes);
      grant();
    }
  }
}
