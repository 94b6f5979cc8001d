/**
 * A lease kept alive while its holder lives: renewed every third of its TTL,
 * revoked on release. When renewing finds the lease expired (the holder was
 * cut off longer than the TTL), `onLost` is told: whatever the lease held
 * (a lock, a registration) is gone and must be taken again. With
 * `lostWhenUnrenewed`, it is told as soon as no renewal has succeeded for the
 * TTL, etcd unreachable: a lock may be someone else's by then, whatever etcd
 * says once it answers again.
 */
import type { EtcdClient } from "./etcd_client.ts";
import { every } from "../base/deadline.ts";

export class LeaseKeeper {
  readonly lease: string;
  readonly #etcd: EtcdClient;
  readonly #stopTimer: () => void;
  #lost = false;
  #stopped = false;
  /** When a renewal last succeeded (or the lease was granted), by performance.now(). */
  #renewedAt = performance.now();

  private constructor(
    etcd: EtcdClient,
    lease: string,
    ttlSeconds: number,
    onLost: (() => void) | undefined,
    lostWhenUnrenewed: boolean,
  ) {
    this.#etcd = etcd;
    this.lease = lease;
    const lose = () => {
      if (this.#lost || this.#stopped) return;
      this.#lost = true;
      onLost?.();
    };
    this.#stopTimer = every(ttlSeconds * 1000 / 3, () => {
      if (lostWhenUnrenewed && performance.now() - this.#renewedAt >= ttlSeconds * 1000) lose();
      etcd.keepAlive(lease).then((alive) => {
        if (alive) this.#renewedAt = performance.now();
        else lose();
      }, () => {
        // etcd unreachable for now: the next renewal tries again.
      });
    });
  }

  static async grant(
    etcd: EtcdClient,
    ttlSeconds: number,
    onLost?: () => void,
    options: { lostWhenUnrenewed?: boolean } = {},
  ): Promise<LeaseKeeper> {
    return new LeaseKeeper(
      etcd,
      await etcd.grantLease(ttlSeconds),
      ttlSeconds,
      onLost,
      options.lostWhenUnrenewed ?? false,
    );
  }

  /** Whether renewing found the lease expired. */
  get lost(): boolean {
    return this.#lost;
  }

  /** Stops renewing and revokes the lease: every key under it goes. */
  async revoke(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopTimer();
    await this.#etcd.revokeLease(this.lease);
  }

  /** Stops renewing without revoking (the keys lapse with the lease). */
  stop(): void {
    this.#stopped = true;
    this.#stopTimer();
  }
}
