/**
 * A small TCP fault proxy for tests: it sits between clients and one instance
 * and injects network faults into the connections it accepts.
 *
 * Faults, read when a connection is accepted (change `fault` at any time; the
 * next connection gets the new one):
 * - `latencyMs`: every chunk, in both directions, is delivered this much later.
 * - `bytesPerSecond`: each direction of each connection is throttled to this rate.
 * - `cutAfterBytes`: after this many bytes (both directions together) both sides
 *   are closed in an orderly way (FIN), as a proxy or NAT dropping the flow would.
 * - `resetAfterBytes`: the same, but both sides are reset (RST). Deno's own sockets
 *   cannot set SO_LINGER 0, so the proxy uses node:net's `resetAndDestroy()`,
 *   which sends a real RST (the peer's read fails with ECONNRESET).
 * - `blackhole`: the connection is accepted, then nothing: no byte is read or
 *   sent and it is never closed, like a host that vanished off the network.
 * - `loseReply`: the instance gets a request whole and acts on it, but its
 *   reply never arrives: both sides are reset instead (see LoseReply).
 *
 * A connection whose upstream instance is down is reset at once, as the
 * instance's own port would refuse it.
 */
import net from "node:net";

export interface Fault {
  latencyMs?: number;
  bytesPerSecond?: number;
  cutAfterBytes?: number;
  resetAfterBytes?: number;
  blackhole?: boolean;
  loseReply?: LoseReply;
}

/**
 * Once the client has sent more than `afterClientBytes` on a connection, the
 * instance's next bytes are not delivered: both sides are reset instead. The
 * threshold picks which request loses its reply: hello and file.get take
 * under 150 bytes with short names, a signed request over 300.
 */
export interface LoseReply {
  afterClientBytes: number;
  /**
   * Replies still to lose, shared by every proxy given the same object: the
   * first `count` are lost whichever proxy carries them. Unlimited without it.
   */
  left?: { count: number };
  /** Runs while the reply is held back, before the reset: what happens "meanwhile". */
  meanwhile?: () => Promise<void>;
}

export interface ProxyCounters {
  connections: number;
  /** Bytes forwarded client to instance, and instance to client. */
  bytesUp: number;
  bytesDown: number;
  cuts: number;
  resets: number;
  blackholed: number;
  /** Replies held back and reset by `loseReply`. */
  lostReplies: number;
  /** Connections reset because the instance behind the proxy refused them. */
  refused: number;
}

/** Chunks of a direction waiting out their latency; reading pauses above this. */
const MAX_DELAYED_BYTES = 4 * 1024 * 1024;

export class FaultProxy {
  readonly port: number;
  readonly target: { hostname: string; port: number };
  fault: Fault = {};
  readonly counters: ProxyCounters = {
    connections: 0,
    bytesUp: 0,
    bytesDown: 0,
    cuts: 0,
    resets: 0,
    blackholed: 0,
    lostReplies: 0,
    refused: 0,
  };
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server, port: number, target: FaultProxy["target"]) {
    this.#server = server;
    this.port = port;
    this.target = target;
  }

  /** Listens on 127.0.0.1:`port` (0 picks a free one) and forwards to `target`. */
  static async start(
    target: { hostname?: string; port: number },
    options: { port?: number; fault?: Fault } = {},
  ): Promise<FaultProxy> {
    // Half-open allowed: a client's FIN is passed on, the other direction keeps flowing.
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    const proxy = new FaultProxy(server, port, {
      hostname: target.hostname ?? "127.0.0.1",
      port: target.port,
    });
    server.on("connection", (client: net.Socket) => proxy.#accept(client));
    if (options.fault) proxy.fault = options.fault;
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    // Errors end the pair through "close"; an unhandled "error" would crash the test.
    socket.on("error", () => {});
  }

  #accept(client: net.Socket): void {
    this.counters.connections++;
    this.#track(client);
    const fault = { ...this.fault };
    if (fault.blackhole) {
      this.counters.blackholed++;
      return; // Paused since accept: nothing is read, nothing is sent.
    }
    client.setNoDelay(true);
    const upstream = net.connect({
      host: this.target.hostname,
      port: this.target.port,
      allowHalfOpen: true,
    });
    this.#track(upstream);
    upstream.setNoDelay(true);
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      const budget = _FaultBudget.from(fault);
      const end = (kind: "cut" | "reset") => {
        if (kind === "cut") {
          this.counters.cuts++;
          client.end(() => client.destroy());
          upstream.end(() => upstream.destroy());
        } else {
          this.counters.resets++;
          client.resetAndDestroy();
          upstream.resetAndDestroy();
        }
      };
      let clientBytes = 0;
      const loseReply = fault.loseReply;
      // Asked before each chunk from the instance: hold it back and reset instead?
      const loses = async (): Promise<boolean> => {
        if (!loseReply || clientBytes <= loseReply.afterClientBytes) return false;
        if (loseReply.left) {
          if (loseReply.left.count <= 0) return false;
          loseReply.left.count--;
        }
        this.counters.lostReplies++;
        await loseReply.meanwhile?.();
        return true;
      };
      void _pump(client, upstream, fault, budget, end, (n) => {
        this.counters.bytesUp += n;
        clientBytes += n;
      });
      void _pump(
        upstream,
        client,
        fault,
        budget,
        end,
        (n) => (this.counters.bytesDown += n),
        loses,
      );
    });
    upstream.once("close", () => {
      if (!connected) {
        this.counters.refused++;
        if (!client.destroyed) client.resetAndDestroy();
      } else if (!client.destroyed) {
        client.end(() => client.destroy());
      }
    });
    client.once("close", () => {
      if (!upstream.destroyed) upstream.destroy();
    });
  }
}

/** Bytes both directions of one connection may still carry before a cut or reset. */
class _FaultBudget {
  remaining: number;
  readonly kind: "cut" | "reset" | undefined;
  fired = false;

  constructor(remaining: number, kind: "cut" | "reset" | undefined) {
    this.remaining = remaining;
    this.kind = kind;
  }

  static from(fault: Fault): _FaultBudget {
    if (fault.resetAfterBytes !== undefined) {
      return new _FaultBudget(fault.resetAfterBytes, "reset");
    }
    if (fault.cutAfterBytes !== undefined) return new _FaultBudget(fault.cutAfterBytes, "cut");
    return new _FaultBudget(Infinity, undefined);
  }
}

function _sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** Writes a chunk, waiting for the socket to drain; resolves early if it closes. */
function _write(socket: net.Socket, chunk: Uint8Array): Promise<void> {
  if (socket.destroyed || socket.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    if (socket.write(chunk)) return resolve();
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.on("drain", done);
    socket.on("close", done);
  });
}

/** Forwards one direction, applying the connection's fault. */
async function _pump(
  from: net.Socket,
  to: net.Socket,
  fault: Fault,
  budget: _FaultBudget,
  end: (kind: "cut" | "reset") => void,
  count: (bytes: number) => void,
  /** When it resolves true for a chunk, the chunk is dropped and both sides reset. */
  drops?: () => Promise<boolean>,
): Promise<void> {
  const latencyMs = fault.latencyMs ?? 0;
  const rate = fault.bytesPerSecond ?? 0;
  let delivery = Promise.resolve();
  let delayed = 0;
  let rateStart = performance.now();
  let rateBytes = 0;
  from.resume();
  try {
    for await (const data of from) {
      if (budget.fired) return;
      if (drops && await drops()) {
        budget.fired = true;
        return end("reset");
      }
      let chunk = data as Uint8Array;
      let fire = false;
      if (chunk.length >= budget.remaining) {
        chunk = chunk.subarray(0, budget.remaining);
        fire = budget.kind !== undefined;
      }
      budget.remaining -= chunk.length;
      if (fire) budget.fired = true;
      if (latencyMs > 0) {
        const due = performance.now() + latencyMs;
        delayed += chunk.length;
        const piece = chunk;
        delivery = delivery.then(async () => {
          await _sleep(due - performance.now());
          await _write(to, piece);
          count(piece.length);
          delayed -= piece.length;
        });
        if (delayed > MAX_DELAYED_BYTES || fire) await delivery;
      } else {
        await _write(to, chunk);
        count(chunk.length);
      }
      if (rate > 0) {
        rateBytes += chunk.length;
        await _sleep(rateStart + (rateBytes / rate) * 1000 - performance.now());
        if (rateBytes > rate) {
          // Restart the window now and then so a pause does not bank a burst.
          rateStart = performance.now();
          rateBytes = 0;
        }
      }
      if (fire) return end(budget.kind!);
    }
    await delivery;
    if (!budget.fired && !to.destroyed) to.end();
  } catch {
    // The socket broke; the "close" handlers end the other side.
  }
}
