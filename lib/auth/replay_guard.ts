/**
 * The replay guard: every signed request's nonce may be used once. Each
 * nonce is claimed in a NonceStore shared by the instances that accept signed
 * requests, until no request carrying it can pass the freshness check any more
 * (SIGNATURE_MAX_AGE_MS after its timestamp); the guard sweeps expired claims
 * now and then.
 */
import { ProtocolError } from "../wire/errors.ts";
import { type SignedAuth } from "../wire/ops_signed.ts";
import { type NonceStore } from "./nonce_store.ts";
import { SIGNATURE_MAX_AGE_MS } from "./signed_request.ts";

/** How often one guard sweeps expired nonces from its store. */
export const NONCE_PRUNE_INTERVAL_MS = 60_000;

export class ReplayGuard {
  readonly #store: NonceStore;
  #lastSweep = 0;

  constructor(store: NonceStore) {
    this.#store = store;
  }

  /**
   * Records the nonce of a request whose signature already checked out;
   * throws UNAUTHORIZED when it was used before. Call only after the
   * freshness check, so every nonce still on record has not expired.
   */
  async claim(auth: SignedAuth, now = Date.now()): Promise<void> {
    const first = await this.#store.claim(
      auth.key,
      auth.nonce,
      auth.timestamp + SIGNATURE_MAX_AGE_MS,
    );
    if (!first) {
      throw new ProtocolError(
        "UNAUTHORIZED",
        "Signed request was already used (replay refused); sign a new one",
      );
    }
    if (now - this.#lastSweep >= NONCE_PRUNE_INTERVAL_MS) {
      this.#lastSweep = now;
      await this.#store.sweep(now);
    }
  }
}
