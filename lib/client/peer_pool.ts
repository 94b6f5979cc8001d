/** Idle connections per server, reused across requests (fetch and upload). */
import { isConnectionGone } from "../wire/errors.ts";
import { type ConnectOptions, Peer } from "./peer.ts";

export interface PeerPoolOptions extends ConnectOptions {
  /**
   * Closes every connection, those in use too, once aborted (Ctrl-C): a read
   * waiting on a stalled instance ends at once instead of after the stall
   * timeout, and the failed read's caller sees the abort.
   */
  signal?: AbortSignal | undefined;
}

export class PeerPool {
  readonly #idle = new Map<string, Peer[]>();
  /** Connections handed out by begin() and not released (closed ones are swept out). */
  readonly #busy = new Set<Peer>();
  readonly #options: PeerPoolOptions;

  constructor(options: PeerPoolOptions) {
    this.#options = options;
    options.signal?.addEventListener("abort", () => {
      this.closeAll();
      for (const peer of this.#busy) peer.close();
      this.#busy.clear();
    }, { once: true });
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
    // Callers close a connection that failed themselves: forget those here.
    for (const peer of this.#busy) if (peer.closed) this.#busy.delete(peer);
    const idle = this.#idle.get(address);
    let peer = idle?.pop();
    while (peer?.closed) peer = idle?.pop();
    if (peer !== undefined) {
      this.#busy.add(peer);
      try {
        return { peer, value: await first(peer) };
      } catch (error) {
        this.#busy.delete(peer);
        peer.close();
        if (!isConnectionGone(error)) throw error;
        for (const old of this.#idle.get(address)?.splice(0) ?? []) old.close();
      }
    }
    this.#options.signal?.throwIfAborted();
    peer = await _unlessAborted(Peer.connect(address, this.#options), this.#options.signal);
    this.#busy.add(peer);
    try {
      return { peer, value: await first(peer) };
    } catch (error) {
      this.#busy.delete(peer);
      peer.close();
      throw error;
    }
  }

  /** Returns a connection whose last reply was read whole; a closed one is dropped. */
  release(peer: Peer): void {
    this.#busy.delete(peer);
    if (peer.closed) return;
    const idle = this.#idle.get(peer.address) ?? [];
    idle.push(peer);
    this.#idle.set(peer.address, idle);
  }

  /** Closes the idle connections (those in use close as their users finish). */
  closeAll(): void {
    for (const peers of this.#idle.values()) for (const peer of peers) peer.close();
    this.#idle.clear();
  }
}

/**
 * A new connection, or the abort's reason as soon as `signal` aborts (a
 * hello to a stalled instance waits out the stall timeout); a connection
 * that comes after the abort is closed.
 */
function _unlessAborted(connecting: Promise<Peer>, signal: AbortSignal | undefined): Promise<Peer> {
  if (!signal) return connecting;
  return new Promise<Peer>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      connecting.then((late) => late.close(), () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    connecting.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
