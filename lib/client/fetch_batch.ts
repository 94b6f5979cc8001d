/**
 * Fetching many files in one process: each file is an ordinary fetch
 * (fetch.ts: every part verified, resumable, failover, partial and lock
 * files, renamed into place at the end), and a bounded number of them run at
 * once over one pool of connections and one set of hash workers. Entries
 * are looked up many at a time (file.lookup), so a small file is then one
 * round trip (its part): the speed comes from many of them in flight, not
 * from any one being fast. A file that fails is recorded and the others go
 * on; only a stop (Ctrl-C) ends the batch early.
 */
import { every } from "../base/deadline.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { HashPool, RECEIVE_HASH_WORKERS } from "../hash/hash_pool.ts";
import {
  type FetchEvent,
  fetchFile,
  type FetchOptions,
  type FetchProgress,
  type FetchResult,
  PROGRESS_INTERVAL_MS,
} from "./fetch.ts";
import { locateFile } from "./locate.ts";
import { DEFAULT_STALL_TIMEOUT_MS, type FileInfo } from "./peer.ts";
import { PeerPool } from "./peer_pool.ts";
import { ProtocolError } from "../wire/errors.ts";

/**
 * Files fetched at once by default. Files of 4-64 KiB from a 6-instance
 * loopback cluster (2 cores): 16 at once was about as fast as 32 and 64;
 * 4 took about twice as long.
 */
export const DEFAULT_BATCH_FILES = 16;
export const MAX_BATCH_FILES = 256;

/** What a batch fetch is told; the per-file fields are FetchOptions'. */
export type BatchOptions = Omit<FetchOptions, "name" | "shared" | "onEvent"> & {
  /** The names to fetch, in order. */
  names: readonly string[];
  /** Files fetched at once (DEFAULT_BATCH_FILES). */
  files?: number | undefined;
  onEvent?: (name: string, event: FetchEvent) => void;
  /** One file is done, fetched or failed. */
  onFile?: (outcome: FileOutcome) => void;
};

export type FileOutcome =
  | { name: string; ok: true; result: FetchResult }
  | { name: string; ok: false; error: unknown };

const _SUMMED = [
  "size",
  "parts",
  "bytesPresent",
  "partsPresent",
  "bytesFetched",
  "partsFetched",
  "bytesReceived",
  "failovers",
  "digestMismatches",
] as const;
type _Summed = (typeof _SUMMED)[number];

/**
 * The batch as a whole: a fetch's counters summed over its files (those not
 * started count as nothing; size and parts are of the files whose entry is
 * known), and how many files there are and how many ended.
 */
export type BatchProgress = Pick<FetchProgress, _Summed | "elapsedMs"> & {
  files: number;
  filesFetched: number;
  filesFailed: number;
};

export interface BatchResult extends BatchProgress {
  outcomes: FileOutcome[];
}

/** Fetches every name into `destDir`; a file that fails does not stop the others. */
export async function fetchBatch(
  options: BatchOptions,
  onProgress?: (progress: BatchProgress) => void,
): Promise<BatchResult> {
  const startedAt = performance.now();
  const connect = {
    ...(options.connectTimeoutMs !== undefined
      ? { connectTimeoutMs: options.connectTimeoutMs }
      : {}),
    tls: options.tls,
  };
  const pool = new PeerPool({
    ...connect,
    stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
  });
  // Small files are received, not checked at a destination: the receiving
  // count of workers, started once for the whole batch when a part too large
  // to hash on the main thread first needs one (HASH_HERE_MAX_BYTES).
  const hashes = new HashPool({ workers: RECEIVE_HASH_WORKERS });
  const limiter = options.limitRateBytesPerSecond
    ? new RateLimiter(options.limitRateBytesPerSecond)
    : undefined;
  const finished: BatchProgress = {
    files: options.names.length,
    filesFetched: 0,
    filesFailed: 0,
    elapsedMs: 0,
    ...Object.fromEntries(_SUMMED.map((key) => [key, 0])) as Record<_Summed, number>,
  };
  const running = new Map<string, FetchProgress>();
  const progress = (): BatchProgress => {
    const sum = { ...finished, elapsedMs: performance.now() - startedAt };
    for (const p of running.values()) for (const key of _SUMMED) sum[key] += p[key];
    return sum;
  };
  const stopTicker = onProgress
    ? every(PROGRESS_INTERVAL_MS, () => onProgress(progress()))
    : () => {};
  const outcomes: FileOutcome[] = [];
  const done = (outcome: FileOutcome, last: FetchProgress | undefined) => {
    running.delete(outcome.name);
    if (last) { for (const key of _SUMMED) finished[key] += last[key]; }
    if (outcome.ok) finished.filesFetched++;
    else finished.filesFailed++;
    outcomes.push(outcome);
    options.onFile?.(outcome);
  };

  const present = namesIn(options.destDir);
  const lookups = new _Lookups(options.names, options.servers, pool);
  const fetchOne = async (index: number) => {
    const name = options.names[index]!;
    let last: FetchProgress | undefined;
    try {
      const located = await lookups.entryAt(index) ??
        await _locate(name, options.servers, pool, connect);
      const result = await fetchFile(
        {
          ...options,
          name,
          shared: { hashes, pool, located, limiter, present },
          onEvent: (event) => options.onEvent?.(name, event),
        },
        (p) => {
          last = p;
          running.set(name, p);
        },
      );
      done({ name, ok: true, result }, result);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      done({ name, ok: false, error }, last);
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < options.names.length && !options.signal?.aborted) {
      await fetchOne(next++);
    }
  };
  const width = Math.max(1, Math.min(options.files ?? DEFAULT_BATCH_FILES, MAX_BATCH_FILES));
  try {
    // Every file under way ends (a stopped one records what it has) before the pool closes.
    const settled = await Promise.allSettled(
      Array.from({ length: Math.min(width, options.names.length) }, worker),
    );
    options.signal?.throwIfAborted();
    for (const outcome of settled) if (outcome.status === "rejected") throw outcome.reason;
  } finally {
    stopTicker();
    hashes.close();
    pool.closeAll();
  }
  const result = { ...progress(), outcomes };
  onProgress?.(result);
  return result;
}

/** A destination holding more names than this is not listed up front (see namesIn()). */
export const MAX_LISTED_NAMES = 100_000;

/**
 * The names in `dir` (the batch's destination) as the batch starts, so that
 * a small file whose name, partial file and control file are none of them
 * is fetched without first asking for each (fetch_small.ts): three lstat
 * calls that fail, each a thrown NotFound, were a fifth of the client's time
 * in a batch of 5,000 small files into an empty directory. Undefined when
 * the directory cannot be listed or holds over MAX_LISTED_NAMES.
 */
export function namesIn(dir: string): Set<string> | undefined {
  const names = new Set<string>();
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (names.size >= MAX_LISTED_NAMES) return undefined;
      names.add(entry.name);
    }
  } catch {
    return undefined;
  }
  return names;
}

/** Names looked up in one file.lookup, ahead of their fetches. */
export const LOOKUP_AHEAD_NAMES = 64;

/**
 * The batch's entries, looked up LOOKUP_AHEAD_NAMES at a time in one
 * `file.lookup` each (a round trip and a request per file fewer), the next
 * group asked while the current one is fetched. Anything these lookups do
 * not give (no such file, a failed request, a server without the op) is
 * left to the single-file lookup, which tries every server and explains.
 */
class _Lookups {
  readonly #names: readonly string[];
  readonly #servers: readonly string[];
  readonly #pool: PeerPool;
  readonly #groups = new Map<number, Promise<Map<string, FileInfo & { from: string }>>>();
  /** A server answered UNKNOWN_OP: it predates file.lookup, and so may the others. */
  #unsupported = false;

  constructor(names: readonly string[], servers: readonly string[], pool: PeerPool) {
    this.#names = names;
    this.#servers = servers;
    this.#pool = pool;
  }

  /** The entry of names[index] if its group's lookup found it; else undefined. */
  async entryAt(index: number): Promise<(FileInfo & { from: string }) | undefined> {
    if (this.#unsupported || this.#servers.length === 0) return undefined;
    const group = Math.floor(index / LOOKUP_AHEAD_NAMES);
    // Names are handed out in order: every group before this one is handed out.
    for (const old of this.#groups.keys()) if (old < group) this.#groups.delete(old);
    const found = this.#group(group);
    this.#group(group + 1);
    try {
      return (await found).get(this.#names[index]!);
    } catch {
      return undefined;
    }
  }

  #group(group: number): Promise<Map<string, FileInfo & { from: string }>> {
    let found = this.#groups.get(group);
    if (!found) {
      const start = group * LOOKUP_AHEAD_NAMES;
      found = this.#lookUp(this.#names.slice(start, start + LOOKUP_AHEAD_NAMES));
      found.catch(() => {});
      this.#groups.set(group, found);
    }
    return found;
  }

  async #lookUp(names: readonly string[]): Promise<Map<string, FileInfo & { from: string }>> {
    const found = new Map<string, FileInfo & { from: string }>();
    if (names.length === 0) return found;
    const address = this.#servers[Math.floor(Math.random() * this.#servers.length)]!;
    const peer = await this.#pool.acquire(address);
    try {
      let rest = names;
      while (rest.length > 0) {
        const answered = await peer.lookupFiles(rest);
        if (answered.size === 0) break;
        for (const [name, info] of answered) if (info) found.set(name, { ...info, from: address });
        rest = rest.filter((name) => !answered.has(name));
      }
      this.#pool.release(peer);
    } catch (error) {
      peer.close();
      if (error instanceof ProtocolError && error.code === "UNKNOWN_OP") this.#unsupported = true;
      throw error;
    }
    return found;
  }
}

/**
 * The file's entry, asked on a pooled connection of a server picked at
 * random (so the lookups spread over the cluster); when that fails, the
 * single fetch's lookup, which tries every server and explains a miss.
 */
async function _locate(
  name: string,
  servers: readonly string[],
  pool: PeerPool,
  connect: { connectTimeoutMs?: number; tls: FetchOptions["tls"] },
): Promise<FileInfo & { from: string }> {
  const address = servers[Math.floor(Math.random() * servers.length)];
  if (address !== undefined) {
    try {
      const peer = await pool.acquire(address);
      try {
        const info = await peer.getFile(name);
        pool.release(peer);
        if (info.entry.name === name) return { ...info, from: address };
      } catch {
        peer.close();
      }
    } catch {
      // Cannot connect: the lookup below tries the others.
    }
  }
  return await locateFile(name, servers, connect);
}
