/**
 * Which servers failed a moment ago: a server that failed one part is tried
 * last by the other parts for FAILED_SERVER_COOLDOWN_MS, so that a dead or
 * stalling instance does not cost every part its own timeout; one that then
 * serves a part whole is trusted again at once.
 */

/** A server that failed is avoided by other parts for this long. */
export const FAILED_SERVER_COOLDOWN_MS = 10_000;

export class ServerCooldown {
  readonly #failedAt = new Map<string, number>();
  readonly #cooldownMs: number;

  constructor(cooldownMs: number = FAILED_SERVER_COOLDOWN_MS) {
    this.#cooldownMs = cooldownMs;
  }

  /** `address` failed now. */
  failed(address: string, now: number = Date.now()): void {
    this.#failedAt.set(address, now);
  }

  /** `address` served a part whole: it is no longer avoided. */
  recovered(address: string): void {
    this.#failedAt.delete(address);
  }

  /** Whether `address` failed less than the cooldown ago. */
  isCooling(address: string, now: number = Date.now()): boolean {
    return now - (this.#failedAt.get(address) ?? -Infinity) < this.#cooldownMs;
  }
}
