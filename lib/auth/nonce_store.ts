/**
 * Where the replay guard records the nonces already used: a small interface,
 * so the guard never knows what holds them. Instances on one host share a
 * directory of empty files (FileNonceStore); a cluster spanning hosts needs a
 * store they all see, such as etcd: a claim is a create-if-absent transaction
 * on a key under a lease that ends at the claim's expiry, and sweeping is left
 * to the leases.
 */

/** A record of used nonces, shared by every instance that accepts signed requests. */
export interface NonceStore {
  /**
   * Records that signer `key` used `nonce`, to be kept at least until
   * `expiresAt` (ms since the epoch; after it no request carrying the nonce
   * passes the freshness check, so the store may forget it). Resolves true
   * when this is the first claim, false when that signer's nonce was claimed
   * before. The claim is durable once it resolves true: a request may take
   * effect right after.
   */
  claim(key: string, nonce: string, expiresAt: number): Promise<boolean>;
  /**
   * Forgets claims that expired by `now`; returns how many groups of claims
   * it removed (0 for a store whose claims expire by themselves).
   */
  sweep(now: number): Promise<number>;
}
