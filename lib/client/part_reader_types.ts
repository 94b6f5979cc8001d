/**
 * The values a PartReader (part_reader.ts) takes and gives: a part as its
 * entry describes it, the sink its bytes go to, counters, events, options,
 * a range and a read's result.
 */
import type { PeerPool } from "./peer_pool.ts";
import type { RateLimiter } from "../base/rate_limiter.ts";
import type { TlsClientOptions } from "../wire/tls.ts";
import type { ServerCooldown } from "./server_cooldown.ts";

/** One part of a file, as its entry describes it. */
export interface PartToRead {
  /** The file's name and the part's index in it: for messages and events. */
  fileName: string;
  index: number;
  /** SHA-256 of the whole part, lowercase hex. */
  digest: string;
  /**
   * XXH3-128 of the whole part (lowercase hex), when the entry records it: a
   * sink that hashed the bytes on their way in (PartSink.quickDigest) is
   * checked with it, SHA-256 deciding whenever the two disagree.
   */
  xxh128?: string | undefined;
  size: number;
  /** Ids of the instances holding a copy. */
  replicas: readonly string[];
}

/**
 * Where a part's bytes go. Bytes arrive in order from the offset the last
 * `restart` named; an error the sink throws ends the read at once, as it is
 * (no replica can fix a local problem).
 */
export interface PartSink {
  /** An attempt writes from `offset` on: what the sink took from there on before is void. */
  restart(offset: number): void | Promise<void>;
  /** Takes bytes at `offset` of the part; the reader reuses `bytes` once this resolves. */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** SHA-256 (lowercase hex) and length of bytes [0, part size) as the sink holds them. */
  digest(): Promise<{ digest: string; bytes: number }>;
  /**
   * XXH3-128 (lowercase hex) and length of the bytes written from 0 on, in
   * order, hashed as they came; undefined when the sink did not see them
   * all that way (a resumed part, a restart mid-part).
   */
  quickDigest?(): { digest: string; bytes: number } | undefined;
  /**
   * For a sink that holds the part in memory: a view of its own memory,
   * `length` bytes from `offset`, to receive into. The reader then hands
   * write() bytes from that view, which need no copy.
   */
  receiveInto?(offset: number, length: number): Uint8Array;
}

/** Counters a caller reads (fetch's progress is one such object). */
export interface PartReadCounters {
  /** Part bytes received from the network, verified or not. */
  bytesReceived: number;
  /** Attempts that failed and went on with another (or the same) replica. */
  failovers: number;
  /** Parts whose bytes failed the digest. */
  digestMismatches: number;
}

export type PartReadEvent =
  | { type: "failover"; part: number; from: string; at: number; reason: string }
  | { type: "mismatch"; part: number; replicas: string[] }
  | { type: "part"; part: number; from: string };

export interface PartReaderOptions {
  /** Connections to reuse; the caller closes it. */
  pool: PeerPool;
  /** An instance id to its "host:port". */
  addressOf: (id: string) => string;
  /** Shared by every read of this reader (--limit-rate). */
  limiter?: RateLimiter | undefined;
  signal?: AbortSignal | undefined;
  /** For reports of corrupt copies, which use connections of their own. */
  tls?: TlsClientOptions | undefined;
  /**
   * Check every part with its SHA-256 only, never with its XXH3-128
   * (`fetch --verify`).
   */
  sha256Only?: boolean | undefined;
  /** Updated in place; a new zeroed object when absent. */
  counters?: PartReadCounters;
  /** What happened, and to which part (readMany() reads parts of several files). */
  onEvent?: (event: PartReadEvent, part: PartToRead) => void;
  /**
   * Which servers failed a moment ago, to be passed over for a while: shared
   * by the readers of a batch, so that a stalled instance costs the batch one
   * timeout rather than one per file. Its own when absent.
   */
  cooldown?: ServerCooldown | undefined;
}

export interface PartRange {
  /**
   * First byte to read (default 0). When the range ends at the part's end,
   * the sink's bytes before it count as part of the part: they are checked
   * with the rest, and fetched again if the digest fails.
   */
  start?: number;
  /**
   * Byte after the last one to read (default: the part's size). A range that
   * ends before the part's end cannot be checked against its digest.
   */
  end?: number;
  /** Receive buffer to reuse across reads (see receiveBuffer()). */
  buffer?: Uint8Array;
}

export interface PartReadResult {
  /** The replica that sent the last bytes. */
  from: string;
  /**
   * Whether the part was checked (the range ran to the part's end) and
   * matched its XXH3-128 or its SHA-256.
   */
  verified: boolean;
}
