/** Idle connections per server, reused across requests (fetch and upload). */
import { isConnectionGone } from "../wire/errors.ts";
import { type ConnectOptions, Peer } from "./peer.ts";

export type PeerPoolOptions = ConnectOptions;

export class PeerPool {
  readonly #idle = new Map<string, Peer[]>();
  readonly #options: PeerPoolOptions;

  constructor(options: PeerPoolOptions) {
    this.#options = options;
  }

  /**
   * Begins an exchange with `address` on an idle connection, or a new one:
   * `first(peer)` sends the first request and reads (the start of) its
   * answer. An idle connection may have been closed by the instance since
   * its last answer (it restarted): a first request that finds it gone is no
   * failure of the instance's, so its other idle connections, as old, are
   * closed and `first` runs again on a new connection. On any other error
   * the connection is closed and the error thrown.
   */
  async begin<T>(
    address: string,
    first: (peer: Peer) => Promise<T>,
  ): Promise<{ peer: Peer; value: T }> {
    const idle = this.#idle.get(address);
    let peer = idle?.pop();
    while (peer?.closed) peer = idle?.pop();
    if (peer !== undefined) {
      try {
        return { peer, value: await first(peer) };
      } catch (error) {
        peer.close();
        if (!isConnectionGone(error)) throw error;
        for (const old of this.#idle.get(address)?.splice(0) ?? []) old.close();
      }
    }
    peer = await Peer.connect(address, this.#options);
    try {
      return { peer, value: await first(peer) };
    } catch (error) {
      peer.close();
      throw error;
    }
  }

  /** Returns a connection whose last reply was read whole; a closed one is dropped. */
  release(peer: Peer): void {
    if (peer.closed) return;
    const idle = this.#idle.get(peer.address) ?? [];
    idle.push(peer);
    this.#idle.set(peer.address, idle);
  }

  closeAll(): void {
    for (const peers of this.#idle.values()) for (const peer of peers) peer.close();
    this.#idle.clear();
  }
}
