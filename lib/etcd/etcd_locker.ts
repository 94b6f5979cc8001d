/**
 * Named locks shared by every host of a cluster, held in etcd: the lock is a
 * key created only if absent, under a lease its holder keeps alive. A holder
 * that dies stops renewing, the lease lapses within LOCK_LEASE_SECONDS and the
 * key goes with it, so a dead host never holds a lock for good (the repair
 * lock, the healer's election and the parts lock all rely on this).
 */
import type { EtcdClient } from "./etcd_client.ts";
import type { ClusterKeys } from "./etcd_keys.ts";
import type { Locker } from "../state/manifest_store.ts";
import { LeaseKeeper } from "./lease_keeper.ts";
import { sleep } from "../base/sleep.ts";

/** A lock's lease: how long a dead holder keeps others waiting at most. */
export const LOCK_LEASE_SECONDS = 10;
/** First pause between attempts to take a held lock; doubles up to MAX_LOCK_POLL_MS. */
const FIRST_LOCK_POLL_MS = 20;
const MAX_LOCK_POLL_MS = 500;

const _LOCK_NAME = /^[a-z][a-z0-9-]*$/;

export class EtcdLocker implements Locker {
  readonly #etcd: EtcdClient;
  readonly #keys: ClusterKeys;
  /** Who holds a lock, written into its key for operators reading etcd. */
  readonly #holder: string;

  constructor(etcd: EtcdClient, keys: ClusterKeys, holder: string) {
    this.#etcd = etcd;
    this.#keys = keys;
    this.#holder = holder;
  }

  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(name);
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  /**
   * Takes the lock, waiting while another holds it; resolves to its release.
   * `onLost`: the lease lapsed, or could not be renewed for
   * LOCK_LEASE_SECONDS (this process cut off from etcd), so another may hold
   * the lock now. `signal` ends the wait (with its reason). While it waits,
   * `onHeld` is told who holds the lock, as its key says.
   */
  async acquire(name: string, options: _TakeOptions = {}): Promise<() => Promise<void>> {
    const taken = await this.#take(name, options.wait ?? true, options);
    if (!taken) throw new LockBusyError(name);
    return taken;
  }

  /** Takes the lock if nobody holds it; undefined when someone does. */
  async tryAcquire(
    name: string,
    options: Pick<_TakeOptions, "onLost"> = {},
  ): Promise<(() => Promise<void>) | undefined> {
    return await this.#take(name, false, options);
  }

  async #take(
    name: string,
    wait: boolean,
    options: _TakeOptions,
  ): Promise<(() => Promise<void>) | undefined> {
    if (!_LOCK_NAME.test(name)) {
      throw new TypeError(`Lock name ${JSON.stringify(name)} is not lowercase letters and dashes`);
    }
    const key = this.#keys.lock(name);
    const keeper = await LeaseKeeper.grant(
      this.#etcd,
      LOCK_LEASE_SECONDS,
      options.onLost,
      { lostWhenUnrenewed: options.onLost !== undefined },
    );
    let pause = FIRST_LOCK_POLL_MS;
    try {
      while (true) {
        options.signal?.throwIfAborted();
        const { succeeded } = await this.#etcd.txn(
          [{ key, target: "CREATE", result: "EQUAL", createRevision: 0 }],
          [{ put: { key, value: this.#holder, lease: keeper.lease } }],
        );
        if (succeeded) return async () => await keeper.revoke();
        if (!wait) {
          await keeper.revoke();
          return undefined;
        }
        // Held: read (a write goes through every member's disk) until it is free.
        while (true) {
          await sleep(pause);
          pause = Math.min(pause * 2, MAX_LOCK_POLL_MS);
          options.signal?.throwIfAborted();
          const held = await this.#etcd.get(key);
          if (held === undefined) break;
          options.onHeld?.(held.value);
        }
      }
    } catch (error) {
      await keeper.revoke().catch(() => {});
      throw error;
    }
  }
}

interface _TakeOptions {
  wait?: boolean;
  onLost?: () => void;
  signal?: AbortSignal;
  onHeld?: (holder: string) => void;
}

/** The lock is held by someone else and the caller would not wait. */
export class LockBusyError extends Error {
  constructor(name: string) {
    super(`The ${name} lock is held by another process of the cluster`);
    this.name = "LockBusyError";
  }
}
