/**
 * The nonces of signed requests in etcd, so that a request replayed to an
 * instance on another host is refused too. A claim is a create-if-absent
 * transaction on `nonces/SIGNER/NONCE` under a lease that ends after the
 * claim's expiry; etcd forgets expired claims by itself. Claims share one
 * lease per NONCE_LEASE_BUCKET_MS of expiry, so a busy instance grants a
 * lease now and then, not one per request.
 */
import type { EtcdClient } from "./etcd_client.ts";
import type { ClusterKeys } from "./etcd_keys.ts";
import type { NonceStore } from "../auth/nonce_store.ts";
import { sha256Hex } from "../hash/sha256.ts";

/** Claims whose expiries fall in one such window share a lease. */
export const NONCE_LEASE_BUCKET_MS = 60_000;
/** Leases granted for buckets remembered at most (older ones have expired). */
const MAX_REMEMBERED_BUCKETS = 8;

export class EtcdNonceStore implements NonceStore {
  readonly #etcd: EtcdClient;
  readonly #keys: ClusterKeys;
  readonly #leases = new Map<number, Promise<string>>();

  constructor(etcd: EtcdClient, keys: ClusterKeys) {
    this.#etcd = etcd;
    this.#keys = keys;
  }

  async claim(key: string, nonce: string, expiresAt: number): Promise<boolean> {
    const bucket = Math.floor(expiresAt / NONCE_LEASE_BUCKET_MS);
    const lease = await this.#leaseFor(bucket);
    // Signer keys are long and nonces come from the network: hash them into a key.
    const id = this.#keys.nonce(await sha256Hex(key), await sha256Hex(nonce));
    const { succeeded } = await this.#etcd.txn(
      [{ key: id, target: "CREATE", result: "EQUAL", createRevision: 0 }],
      [{ put: { key: id, value: "", lease } }],
    );
    return succeeded;
  }

  /** A lease that outlives every expiry in `bucket`. */
  #leaseFor(bucket: number): Promise<string> {
    let lease = this.#leases.get(bucket);
    if (!lease) {
      const endsAt = (bucket + 1) * NONCE_LEASE_BUCKET_MS;
      const ttlSeconds = Math.max(1, Math.ceil((endsAt - Date.now()) / 1000) + 1);
      lease = this.#etcd.grantLease(ttlSeconds);
      lease.catch(() => this.#leases.delete(bucket));
      this.#leases.set(bucket, lease);
      for (const old of this.#leases.keys()) {
        if (this.#leases.size <= MAX_REMEMBERED_BUCKETS) break;
        this.#leases.delete(old);
      }
    }
    return lease;
  }

  /** Leases expire the claims: nothing to sweep. */
  sweep(_now: number): Promise<number> {
    return Promise.resolve(0);
  }
}
