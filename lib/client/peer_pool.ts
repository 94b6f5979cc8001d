/** Idle connections per server, reused across requests (fetch and upload). */
import { type ConnectOptions, Peer } from "./peer.ts";

export type PeerPoolOptions = ConnectOptions;

export class PeerPool {
  readonly #idle = new Map<string, Peer[]>();
  readonly #options: PeerPoolOptions;

  constructor(options: PeerPoolOptions) {
    this.#options = options;
  }

  /** An idle connection to `address`, or a new one. */
  async acquire(address: string): Promise<Peer> {
    const idle = this.#idle.get(address);
    while (idle && idle.length > 0) {
      const peer = idle.pop()!;
      if (!peer.closed) return peer;
    }
    return await Peer.connect(address, this.#options);
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
