/**
 * The instance's connection handler. It is a plain function over a connection,
 * tested in-process; commands/serve.ts only listens and prints a ready line.
 *
 * Each connection is a loop: read a frame head (within the idle and request
 * timeouts), parse it against the wire's op table, check the hello came first
 * and that only ops with a body send one, then run the op's handler
 * (handlers.ts). A request-level error is answered and the loop goes on; a
 * framing error, or any error that leaves the stream in doubt, is answered
 * and the connection closed.
 */
import { ProtocolError } from "../wire/errors.ts";
import { type ManifestStore } from "../state/manifest_store.ts";
import { type Mutations } from "./mutations.ts";
import {
  encodeFrame,
  errorHeader,
  FrameReader,
  type Header,
  PROTOCOL_VERSION,
  writeAll,
} from "../wire/frame.ts";
import { parseRequest, type RequestOp, takesBody } from "../wire/ops.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { type PartStore } from "../state/store.ts";
import {
  closeQuietly,
  type Connection,
  type ConnectionState,
  isDisconnect,
  refuseAndClose,
  sendAndClose,
  withDeadline,
} from "./connection.ts";
import {
  connectionsPerAddress,
  DEFAULT_LIMITS,
  type Exchange,
  type Handler,
  type Instance,
  REFUSAL_DRAIN_MS,
  type ServerCounters,
  type ServerLimits,
} from "./handler.ts";
import { HANDLERS } from "./handlers.ts";
import { ReplyWriter } from "./reply_writer.ts";
import { explainedError, type InstancePlaces } from "./explained_error.ts";

export interface ServerOptions {
  id: string;
  store: PartStore;
  manifest: ManifestStore;
  /** Maps an instance id to the address clients should dial ("host:port"). */
  addressOf: (id: string) => string;
  limits?: Partial<ServerLimits>;
  /** Caps the bytes per second this instance sends, over all connections. */
  limitRateBytesPerSecond?: number;
  /**
   * Loads the handler of upload, delete and rename on their first use, so
   * that an instance that only serves parts never loads that code; without
   * it those ops answer INTERNAL.
   */
  mutations?: () => Promise<Mutations>;
  /** Where the instance keeps its parts and manifest, named in errors its operator must fix. */
  places?: Omit<InstancePlaces, "id">;
}

/** How often one unexpected error's message is written to the log, and how many are kept. */
const UNEXPECTED_LOG_INTERVAL_MS = 60_000;
const UNEXPECTED_LOG_KEYS = 100;

/** Errors after which the connection is closed: the stream can no longer be trusted. */
const FATAL_CODES = new Set([
  "BAD_FRAME",
  "HEADER_TOO_LARGE",
  "BODY_TOO_LARGE",
  "UNKNOWN_OP",
  "BAD_REQUEST",
  "VERSION_MISMATCH",
  "TIMEOUT",
]);

export class Server {
  readonly id: string;
  readonly limits: ServerLimits;
  readonly counters: ServerCounters = {
    connections: 0,
    activeConnections: 0,
    refusedConnections: 0,
    requests: 0,
    partsServed: 0,
    bytesServed: 0,
    partsStored: 0,
    bytesStored: 0,
    errorsSent: 0,
    reportsReceived: 0,
    quarantined: 0,
    reportedMissing: 0,
    partsVerified: 0,
  };
  readonly #open = new Set<Connection>();
  /** Connections being served, by client address. */
  readonly #perAddress = new Map<string, number>();
  /** When each unexpected error's message was last logged (#logUnexpected). */
  readonly #logged = new Map<string, number>();
  /** part.verify budgets, by client address; dropped with the address's last connection. */
  readonly #verifyLimiters = new Map<string, RateLimiter>();
  /** What the handlers see of this server. */
  readonly #instance: Instance;
  readonly #places: InstancePlaces;

  constructor(options: ServerOptions) {
    this.id = options.id;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#places = {
      id: options.id,
      dataDir: options.places?.dataDir,
      manifest: options.places?.manifest,
    };
    let mutationsLoaded: Promise<Mutations> | undefined;
    this.#instance = {
      id: options.id,
      startedAt: Date.now(),
      limits: this.limits,
      counters: this.counters,
      store: options.store,
      manifest: options.manifest,
      addressOf: options.addressOf,
      limiter: options.limitRateBytesPerSecond
        ? new RateLimiter(options.limitRateBytesPerSecond)
        : undefined,
      verifyLimiter: (address) => {
        let limiter = this.#verifyLimiters.get(address ?? "");
        if (!limiter) {
          limiter = new RateLimiter(this.limits.verifyBytesPerSecond);
          this.#verifyLimiters.set(address ?? "", limiter);
        }
        return limiter;
      },
      publishBuffered: 0,
      mutations: () => {
        const load = options.mutations;
        if (!load) throw new ProtocolError("INTERNAL", "This instance does not accept changes");
        return mutationsLoaded ??= load();
      },
    };
  }

  /**
   * Accepts a new connection from `address` (the client's IP): serves it,
   * or refuses it with BUSY when the instance, or that address's share of
   * it (connectionsPerAddress), is full.
   */
  async accept(conn: Connection, address?: string): Promise<void> {
    const fromAddress = address === undefined ? 0 : this.#perAddress.get(address) ?? 0;
    let refusal: string | undefined;
    if (this.counters.activeConnections >= this.limits.maxConnections) {
      refusal = "Too many connections; try another instance";
    } else if (fromAddress >= connectionsPerAddress(this.limits)) {
      refusal = `Too many connections from ${address} (${fromAddress} of the ${
        connectionsPerAddress(this.limits)
      } one address may hold); close some or try another instance`;
    }
    if (refusal !== undefined) {
      this.counters.refusedConnections++;
      await refuseAndClose(
        conn,
        errorHeader(new ProtocolError("BUSY", refusal)),
        REFUSAL_DRAIN_MS,
      );
      return;
    }
    if (address === undefined) return await this.handle(conn);
    this.#perAddress.set(address, fromAddress + 1);
    try {
      await this.handle(conn, address);
    } finally {
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left > 0) {
        this.#perAddress.set(address, left);
      } else {
        this.#perAddress.delete(address);
        this.#verifyLimiters.delete(address);
      }
    }
  }

  /** Serves one connection until the peer leaves, errs or idles out. Never throws. */
  async handle(conn: Connection, address?: string): Promise<void> {
    this.counters.connections++;
    this.counters.activeConnections++;
    this.#open.add(conn);
    // Every reply write must make progress within idleTimeoutMs: a client that
    // asks for a large reply (file.list, part.list) and never reads it would
    // otherwise hold its slot, and the reply, forever. Replies to requests
    // sent together leave together.
    const out: ReplyWriter = new ReplyWriter(
      conn,
      () => this.limits.idleTimeoutMs,
      () => reader.bufferedBytes > 0,
    );
    // A read that times out rejects without closing, so a TIMEOUT frame can still be sent.
    const reader: FrameReader = new FrameReader(out, { timeoutMs: this.limits.idleTimeoutMs });
    const state: ConnectionState = { greeted: false, dataBuffer: undefined, address };
    try {
      while (true) {
        reader.timeoutMs = this.limits.idleTimeoutMs;
        // Each read may wait idleTimeoutMs; the whole header gets one requestTimeoutMs
        // more, so a client trickling a byte at a time cannot hold its slot forever.
        const head = await withDeadline(
          reader.readHead(),
          this.limits.idleTimeoutMs + this.limits.requestTimeoutMs,
          () => closeQuietly(conn),
        );
        if (head === null) break;
        reader.timeoutMs = this.limits.requestTimeoutMs;
        this.counters.requests++;
        try {
          await this.#dispatch(out, reader, head.header, head.bodyLength, state);
        } catch (thrown) {
          this.#logUnexpected(thrown, head.header.op);
          const error = explainedError(thrown, this.#places);
          if (!(error instanceof ProtocolError) || FATAL_CODES.has(error.code)) throw error;
          // A request-level error: the body has been consumed, the stream is intact.
          if (reader.bodyRemaining > 0) await reader.skipBody();
          this.counters.errorsSent++;
          await writeAll(out, encodeFrame(errorHeader(error)));
        }
      }
    } catch (error) {
      this.counters.errorsSent++;
      // The last frame, and what was gathered before it, leave before the close.
      out.stopGathering();
      if (!isDisconnect(error)) {
        this.#logUnexpected(error, undefined);
        await sendAndClose(out, errorHeader(explainedError(error, this.#places)));
      }
    } finally {
      this.#open.delete(conn);
      this.counters.activeConnections--;
      closeQuietly(conn);
    }
  }

  /**
   * Writes an error that is not a ProtocolError (a bug, or a fault of the
   * instance's own files) to the instance's log, which is all its operator
   * gets: the client is told only its kind. Each message once a minute.
   */
  #logUnexpected(error: unknown, op: unknown): void {
    if (error instanceof ProtocolError || !(error instanceof Error)) return;
    const now = Date.now();
    const key = `${error.name}: ${error.message}`;
    if ((this.#logged.get(key) ?? -Infinity) > now - UNEXPECTED_LOG_INTERVAL_MS) return;
    if (this.#logged.size >= UNEXPECTED_LOG_KEYS) this.#logged.clear();
    this.#logged.set(key, now);
    console.error(
      `${new Date(now).toISOString()} error${typeof op === "string" ? ` in ${op}` : ""}: ${key}`,
    );
  }

  /** Closes every open connection (for shutdown). */
  closeAll(): void {
    for (const conn of this.#open) closeQuietly(conn);
  }

  async #dispatch(
    conn: Connection,
    reader: FrameReader,
    header: Header,
    bodyLength: number,
    state: ConnectionState,
  ): Promise<void> {
    const request = parseRequest(header);
    if (!state.greeted && request.op !== "hello") {
      throw new ProtocolError("VERSION_MISMATCH", "The first frame must be a hello");
    }
    if (request.op === "hello") {
      if (request.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "VERSION_MISMATCH",
          `Protocol version ${request.version} is not supported (this server speaks ${PROTOCOL_VERSION})`,
        );
      }
    }
    if (!takesBody(request.op) && bodyLength > 0) {
      throw new ProtocolError("BAD_REQUEST", `${request.op} takes no body`);
    }
    const exchange: Exchange<RequestOp> = {
      request,
      conn,
      reader,
      bodyLength,
      state,
      reply: (reply, body) => writeAll(conn, encodeFrame(reply, body)),
    };
    // The table pairs each op with its handler; the union of requests cannot show it.
    await (HANDLERS[request.op] as Handler<RequestOp>)(this.#instance, exchange);
  }
}
