/**
 * What a request handler works with: the instance (its store, manifest,
 * limits and counters) and one exchange (the parsed request, the connection
 * and a typed reply). handlers.ts holds one handler per op of the wire's op
 * table; server.ts runs the connection loop around them.
 */
import { type ManifestStore } from "../state/manifest_store.ts";
import { type PartStore } from "../state/store.ts";
import { type RateLimiter } from "../base/rate_limiter.ts";
import { type FrameReader } from "../wire/frame.ts";
import { type ReplyOf, type RequestOf, type RequestOp } from "../wire/ops.ts";
import { type Connection, type ConnectionState } from "./connection.ts";
import { type Mutations } from "./mutations.ts";

export interface ServerLimits {
  /** A connection with no request for this long is closed. */
  idleTimeoutMs: number;
  /** A request must arrive whole, and a body must keep flowing, within this. */
  requestTimeoutMs: number;
  /** Connections served at once; more get BUSY and are closed. */
  maxConnections: number;
  /**
   * Bytes of stored parts that part.verify re-hashes per second for one
   * client address: anyone who can connect may ask, and must not be able
   * to keep the instance hashing at full speed.
   */
  verifyBytesPerSecond: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  idleTimeoutMs: 60_000,
  requestTimeoutMs: 10_000,
  maxConnections: 128,
  verifyBytesPerSecond: 64 * 1024 * 1024,
};

/**
 * The share of maxConnections that connections from one client address may
 * hold at once: a client that opens many connections (or a buggy loop) is
 * told BUSY before it takes every slot, and others keep room.
 */
export const ADDRESS_CONNECTION_SHARE = 0.5;
/** How long a refused connection is read before it is closed (see refuseAndClose). */
export const REFUSAL_DRAIN_MS = 500;

/** Connections one client address may hold at once under `limits`. */
export function connectionsPerAddress(limits: ServerLimits): number {
  return Math.max(1, Math.floor(limits.maxConnections * ADDRESS_CONNECTION_SHARE));
}

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
  /** Reports of a copy this instance does not hold (a listed replica that lost it). */
  reportedMissing: number;
  /** Stored copies re-hashed on request (part.verify). */
  partsVerified: number;
}

/** The instance as its handlers see it; one per Server, shared by all its connections. */
export interface Instance {
  readonly id: string;
  /** When the instance started (Date.now()), for the uptime in stats. */
  readonly startedAt: number;
  readonly limits: ServerLimits;
  readonly counters: ServerCounters;
  readonly store: PartStore;
  readonly manifest: ManifestStore;
  /** Maps an instance id to the address clients should dial ("host:port"). */
  readonly addressOf: (id: string) => string;
  /** Caps the bytes per second the instance sends, when set. */
  readonly limiter: RateLimiter | undefined;
  /** The part.verify budget of one client address (limits.verifyBytesPerSecond). */
  readonly verifyLimiter: (address: string | undefined) => RateLimiter;
  /** Bytes of file.publish bodies held in memory right now, over all connections. */
  publishBuffered: number;
  /** The handler of signed mutations, loaded on first use; INTERNAL when the instance has none. */
  mutations(): Promise<Mutations>;
}

/** One request and what its handler may do on the connection. */
export interface Exchange<K extends RequestOp> {
  readonly request: RequestOf<K>;
  readonly conn: Connection;
  /** Positioned at the request's body, when it has one. */
  readonly reader: FrameReader;
  readonly bodyLength: number;
  readonly state: ConnectionState;
  /** Sends the reply the op table gives for K, with an optional small body. */
  reply(header: ReplyOf<K>, body?: Uint8Array): Promise<void>;
}

/** Answers one request of op K; a ProtocolError it throws becomes the error frame. */
export type Handler<K extends RequestOp> = (
  instance: Instance,
  exchange: Exchange<K>,
) => Promise<void>;

/** The handlers of one family of ops, one per op. */
export type HandlerFamily<K extends RequestOp> = { [Op in K]: Handler<Op> };
