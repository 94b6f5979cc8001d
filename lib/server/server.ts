/**
 * The instance's connection handler. It is a plain function over a connection,
 * tested in-process; commands/serve.ts only listens and prints a ready line.
 */
import { MAX_PART_BYTES } from "../state/config.ts";
import { deadline } from "../base/deadline.ts";
import { ProtocolError } from "../wire/errors.ts";
import { type FileEntry, type ManifestCache } from "../state/manifest.ts";
import { type Mutations } from "./mutations.ts";
import {
  type ByteSink,
  type ByteSource,
  encodeFrame,
  encodeFrameHead,
  errorHeader,
  FrameReader,
  type Header,
  jsonBody,
  PROTOCOL_VERSION,
  writeAll,
} from "../wire/frame.ts";
import { parseRequest, type Request, takesBody } from "../wire/ops.ts";
import { MAX_PUBLISH_BODY_BYTES } from "../wire/ops_signed.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { type PartStore } from "../state/store.ts";

/** Publish bodies (part lists) one instance holds in memory at once, over all connections. */
export const MAX_PUBLISH_BUFFERED_BYTES = 2 * MAX_PUBLISH_BODY_BYTES;

/** Bytes read from disk and written to the socket at a time when serving a part. */
export const DATA_CHUNK_BYTES = 1024 * 1024;

export interface ServerLimits {
  /** A connection with no request for this long is closed. */
  idleTimeoutMs: number;
  /** A request must arrive whole, and a body must keep flowing, within this. */
  requestTimeoutMs: number;
  /** Connections served at once; more get BUSY and are closed. */
  maxConnections: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  idleTimeoutMs: 60_000,
  requestTimeoutMs: 10_000,
  maxConnections: 128,
};

/** Small counters that tests and `fts status` read. */
export interface ServerCounters {
  connections: number;
  activeConnections: number;
  refusedConnections: number;
  requests: number;
  partsServed: number;
  bytesServed: number;
  partsStored: number;
  bytesStored: number;
  errorsSent: number;
  reportsReceived: number;
  quarantined: number;
  /** Stored copies re-hashed on request (part.verify, issue 4). */
  partsVerified: number;
}

export interface ServerOptions {
  id: string;
  store: PartStore;
  manifest: ManifestCache;
  /** Maps an instance id to the address clients should dial ("host:port"). */
  addressOf: (id: string) => string;
  limits?: Partial<ServerLimits>;
  /** Caps the bytes per second this instance sends, over all connections. */
  limitRateBytesPerSecond?: number;
  /**
   * Loads the handler of upload, delete and rename (issue 3) on their first
   * use, so that an instance that only serves parts never loads that code;
   * without it those ops answer INTERNAL.
   */
  mutations?: () => Promise<Mutations>;
}

/** A connection the handler can drive: bytes in, bytes out, close. */
export interface Connection extends ByteSource, ByteSink {
  close(): void;
}

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
    partsVerified: 0,
  };
  readonly #options: ServerOptions;
  readonly #startedAt = Date.now();
  readonly #open = new Set<Connection>();
  readonly #limiter: RateLimiter | undefined;
  /** Bytes of file.publish bodies held in memory right now, over all connections. */
  #publishBuffered = 0;
  #mutationsLoaded: Promise<Mutations> | undefined;

  constructor(options: ServerOptions) {
    this.id = options.id;
    this.#options = options;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#limiter = options.limitRateBytesPerSecond
      ? new RateLimiter(options.limitRateBytesPerSecond)
      : undefined;
  }

  /** Accepts a new connection: serves it, or refuses it when at the limit. */
  async accept(conn: Connection): Promise<void> {
    if (this.counters.activeConnections >= this.limits.maxConnections) {
      this.counters.refusedConnections++;
      await _sendAndClose(
        conn,
        errorHeader(new ProtocolError("BUSY", "Too many connections; try another instance")),
      );
      return;
    }
    await this.handle(conn);
  }

  /** Serves one connection until the peer leaves, errs or idles out. Never throws. */
  async handle(conn: Connection): Promise<void> {
    this.counters.connections++;
    this.counters.activeConnections++;
    this.#open.add(conn);
    // A read that times out rejects without closing, so a TIMEOUT frame can still be sent.
    const reader = new FrameReader(conn, { timeoutMs: this.limits.idleTimeoutMs });
    const state: ConnectionState = { greeted: false, dataBuffer: undefined };
    // Every reply write must make progress within idleTimeoutMs: a client that
    // asks for a large reply (file.list, part.list) and never reads it would
    // otherwise hold its slot, and the reply, forever.
    const out: Connection = {
      read: (buffer) => conn.read(buffer),
      write: (bytes) =>
        _withDeadline(conn.write(bytes), this.limits.idleTimeoutMs, () => _closeQuietly(conn)),
      close: () => conn.close(),
    };
    try {
      while (true) {
        reader.timeoutMs = this.limits.idleTimeoutMs;
        // Each read may wait idleTimeoutMs; the whole header gets one requestTimeoutMs
        // more, so a client trickling a byte at a time cannot hold its slot forever.
        const head = await _withDeadline(
          reader.readHead(),
          this.limits.idleTimeoutMs + this.limits.requestTimeoutMs,
          () => _closeQuietly(conn),
        );
        if (head === null) break;
        reader.timeoutMs = this.limits.requestTimeoutMs;
        this.counters.requests++;
        try {
          await this.#dispatch(out, reader, head.header, head.bodyLength, state);
        } catch (error) {
          if (!(error instanceof ProtocolError) || FATAL_CODES.has(error.code)) throw error;
          // A request-level error: the body has been consumed, the stream is intact.
          if (reader.bodyRemaining > 0) await reader.skipBody();
          this.counters.errorsSent++;
          await writeAll(out, encodeFrame(errorHeader(error)));
        }
      }
    } catch (error) {
      this.counters.errorsSent++;
      if (!_isDisconnect(error)) await _sendAndClose(out, errorHeader(error));
    } finally {
      this.#open.delete(conn);
      this.counters.activeConnections--;
      _closeQuietly(conn);
    }
  }

  /** Closes every open connection (for shutdown). */
  closeAll(): void {
    for (const conn of this.#open) _closeQuietly(conn);
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
    await this.#serve(conn, reader, request, bodyLength, state);
  }

  async #serve(
    conn: Connection,
    reader: FrameReader,
    request: Request,
    bodyLength: number,
    state: ConnectionState,
  ): Promise<void> {
    const { store, manifest } = this.#options;
    switch (request.op) {
      case "hello": {
        state.greeted = true;
        // A damaged manifest must not stop the instance serving parts.
        const generation = await manifest.get().then((m) => m.generation, () => null);
        await writeAll(
          conn,
          encodeFrame({ op: "hello", version: PROTOCOL_VERSION, id: this.id, generation }),
        );
        return;
      }
      case "ping":
        await writeAll(conn, encodeFrame({ op: "pong" }));
        return;
      case "file.get": {
        const current = await manifest.get();
        const entry = Object.hasOwn(current.files, request.name)
          ? current.files[request.name]
          : undefined;
        if (!entry) {
          throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(request.name)}`);
        }
        const body = jsonBody({ entry, instances: this.#addresses(entry) });
        await writeAll(
          conn,
          encodeFrame({ op: "file", name: entry.name, generation: current.generation }, body),
        );
        return;
      }
      case "file.list": {
        const current = await manifest.get();
        const files = Object.values(current.files).map((f) => ({
          name: f.name,
          size: f.size,
          parts: f.parts.length,
          owner: f.owner,
          created: f.created,
        }));
        await writeAll(
          conn,
          encodeFrame({ op: "files", generation: current.generation }, jsonBody(files)),
        );
        return;
      }
      case "part.get":
        await this.#sendPart(conn, request, state);
        return;
      case "part.put":
        await this.#receivePart(conn, reader, request.digest, bodyLength);
        return;
      case "part.report": {
        this.counters.reportsReceived++;
        let quarantined = false;
        try {
          if (!(await store.verify(request.digest))) {
            quarantined = await store.quarantine(request.digest);
            if (quarantined) this.counters.quarantined++;
          }
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
        }
        await writeAll(conn, encodeFrame({ op: "ok", quarantined }));
        return;
      }
      case "stats":
        await writeAll(
          conn,
          encodeFrame({
            op: "stats",
            id: this.id,
            uptimeMs: Date.now() - this.#startedAt,
            ...this.counters,
          }),
        );
        return;
      // --- signed mutations and upload (issue 3): the logic lives in mutations.ts ---
      case "part.has": {
        const size = await store.sizeOf(request.digest);
        // Asked by an upload about to use it (see PartStore.touch).
        if (size !== undefined) await store.touch(request.digest);
        await writeAll(
          conn,
          encodeFrame({ op: "has", digest: request.digest, stored: size !== undefined, size }),
        );
        return;
      }
      case "cluster.info": {
        const { header, body } = await (await this.#mutations()).clusterInfo(
          this.#options.addressOf,
        );
        await writeAll(conn, encodeFrame(header, jsonBody(body)));
        return;
      }
      case "file.publish": {
        if (bodyLength > MAX_PUBLISH_BODY_BYTES) {
          throw new ProtocolError(
            "BODY_TOO_LARGE",
            `A part list may not exceed ${MAX_PUBLISH_BODY_BYTES} bytes`,
          );
        }
        // Bodies are buffered (a part list is parsed whole) only once the
        // signature checked out; all connections together get one budget.
        let reserved = 0;
        const readBody = () => {
          if (this.#publishBuffered + bodyLength > MAX_PUBLISH_BUFFERED_BYTES) {
            throw new ProtocolError("BUSY", "Too many part lists being published; try again");
          }
          this.#publishBuffered += reserved = bodyLength;
          return reader.readBodyBytes(MAX_PUBLISH_BODY_BYTES);
        };
        try {
          await writeAll(
            conn,
            encodeFrame(await (await this.#mutations()).publish(request, readBody)),
          );
        } finally {
          this.#publishBuffered -= reserved;
        }
        return;
      }
      case "file.delete":
        await writeAll(conn, encodeFrame(await (await this.#mutations()).remove(request)));
        return;
      case "file.rename":
        await writeAll(conn, encodeFrame(await (await this.#mutations()).rename(request)));
        return;
      // --- end signed mutations and upload ---
      // --- repair: part.list and part.verify, see PROTOCOL.md "Messages: repair" ---
      case "part.list": {
        const parts = await store.listWithSizes();
        const quarantined = await store.listQuarantined();
        await writeAll(
          conn,
          encodeFrame(
            { op: "parts", count: parts.length },
            jsonBody({ parts, quarantined }),
          ),
        );
        return;
      }
      case "part.verify": {
        const status = await this.#verifyPart(request.digest);
        await writeAll(conn, encodeFrame({ op: "verified", digest: request.digest, status }));
        return;
      }
    }
  }

  /**
   * Re-hashes a stored copy. A copy that fails is quarantined at once, so it is
   * never served again; the caller repairs it from a good replica.
   */
  async #verifyPart(digest: string): Promise<"ok" | "missing" | "quarantined" | "corrupt"> {
    const store = this.#options.store;
    let good: boolean;
    try {
      good = await store.verify(digest);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      if (error.code === "QUARANTINED") return "quarantined";
      if (error.code === "NOT_FOUND") return "missing";
      throw error;
    }
    this.counters.partsVerified++;
    if (good) return "ok";
    if (await store.quarantine(digest)) this.counters.quarantined++;
    return "corrupt";
  }

  #mutations(): Promise<Mutations> {
    const load = this.#options.mutations;
    if (!load) throw new ProtocolError("INTERNAL", "This instance does not accept changes");
    return this.#mutationsLoaded ??= load();
  }

  #addresses(entry: FileEntry): Record<string, string> {
    const out: Record<string, string> = {};
    for (const part of entry.parts) {
      for (const id of part.replicas) out[id] ??= this.#options.addressOf(id);
    }
    return out;
  }

  async #sendPart(
    conn: Connection,
    request: Extract<Request, { op: "part.get" }>,
    state: ConnectionState,
  ): Promise<void> {
    const file = await this.#options.store.open(request.digest);
    try {
      const { size } = await file.stat();
      const { offset, length } = request;
      if (offset + length > size) {
        throw new ProtocolError(
          "BAD_RANGE",
          `Range ${offset}+${length} lies outside the part (${size} bytes)`,
        );
      }
      await writeAll(
        conn,
        encodeFrameHead({ op: "data", digest: request.digest, offset, length }, length),
      );
      if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
      state.dataBuffer ??= new Uint8Array(DATA_CHUNK_BYTES);
      const buffer = state.dataBuffer;
      const chunkBytes = Math.min(buffer.length, this.#limiter?.chunkBytes ?? buffer.length);
      let sent = 0;
      while (sent < length) {
        const n = await file.read(buffer.subarray(0, Math.min(chunkBytes, length - sent)));
        // The part shrank under us: the body cannot be completed, so the only
        // honest signal left is to drop the connection.
        if (n === null) throw new _Disconnect("Stored part is shorter than its header said");
        if (this.#limiter) await this.#limiter.take(n);
        // A client that stops reading would otherwise hold this slot and file
        // forever: it must take each chunk within idleTimeoutMs (so at least
        // DATA_CHUNK_BYTES per idleTimeoutMs, about 17 KiB/s by default).
        await _withDeadline(
          writeAll(conn, buffer.subarray(0, n)),
          this.limits.idleTimeoutMs,
          () => _closeQuietly(conn),
        );
        sent += n;
        this.counters.bytesServed += n;
      }
      this.counters.partsServed++;
    } finally {
      file.close();
    }
  }

  async #receivePart(
    conn: Connection,
    reader: FrameReader,
    digest: string,
    bodyLength: number,
  ): Promise<void> {
    if (bodyLength > MAX_PART_BYTES) {
      throw new ProtocolError("BODY_TOO_LARGE", `A part may not exceed ${MAX_PART_BYTES} bytes`);
    }
    const store = this.#options.store;
    if ((await store.sizeOf(digest)) === bodyLength) {
      await store.touch(digest);
      await reader.skipBody();
      await writeAll(conn, encodeFrame({ op: "ok", stored: false }));
      return;
    }
    const writer = await store.beginWrite(digest);
    const buffer = new Uint8Array(Math.min(DATA_CHUNK_BYTES, Math.max(bodyLength, 1)));
    try {
      while (reader.bodyRemaining > 0) {
        const n = await reader.readBody(buffer);
        await writer.write(buffer.subarray(0, n));
      }
      await writer.commit();
    } catch (error) {
      await writer.abort();
      throw error;
    }
    this.counters.partsStored++;
    this.counters.bytesStored += bodyLength;
    await writeAll(conn, encodeFrame({ op: "ok", stored: true }));
  }
}

interface ConnectionState {
  greeted: boolean;
  dataBuffer: Uint8Array | undefined;
}

class _Disconnect extends Error {}

function _isDisconnect(error: unknown): boolean {
  return error instanceof _Disconnect || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted || error instanceof Deno.errors.NotConnected;
}

async function _sendAndClose(conn: Connection, header: Header): Promise<void> {
  try {
    await writeAll(conn, encodeFrame(header));
  } catch {
    // The peer is gone; nothing to tell it.
  } finally {
    _closeQuietly(conn);
  }
}

/** Runs `onExpire` (which should abort the operation) if `promise` is not settled in time. */
async function _withDeadline<T>(promise: Promise<T>, ms: number, onExpire: () => void): Promise<T> {
  const cancel = deadline(ms, onExpire);
  try {
    return await promise;
  } finally {
    cancel();
  }
}

function _closeQuietly(conn: Connection): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
