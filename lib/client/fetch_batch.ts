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
  type SharedFetch,
} from "./fetch.ts";
import { addressResolver, locateFile, type LocateOptions } from "./locate.ts";
import { HASH_HERE_MAX_BYTES } from "./fetch_parts.ts";
import { FetchError } from "./fetch_error.ts";
import { isSmallFile } from "./fetch_small.ts";
import { helperPath, PARTIAL_SUFFIX, STATE_SUFFIX } from "./helper_paths.ts";
import { MemoryPartSink } from "./memory_part_sink.ts";
import {
  type PartReadCounters,
  PartReader,
  type PartReadEvent,
  type PartToRead,
} from "./part_reader.ts";
import { DEFAULT_STALL_TIMEOUT_MS, type FileInfo, type Peer } from "./peer.ts";
import { PeerPool } from "./peer_pool.ts";
import { ServerCooldown } from "./server_cooldown.ts";
import { isDiskFull } from "../base/fs_util.ts";
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
    signal: options.signal,
  });
  // Small files are received, not checked at a destination: the receiving
  // count of workers, started once for the whole batch when a part too large
  // to hash on the main thread first needs one (HASH_HERE_MAX_BYTES).
  const hashes = new HashPool({ workers: RECEIVE_HASH_WORKERS });
  const limiter = options.limitRateBytesPerSecond
    ? new RateLimiter(options.limitRateBytesPerSecond)
    : undefined;
  // One for every file's reads: a stalled instance costs the batch one timeout, not one a file.
  const cooldown = new ServerCooldown();
  const finished: BatchProgress = {
    files: options.names.length,
    filesFetched: 0,
    filesFailed: 0,
    elapsedMs: 0,
    ...Object.fromEntries(_SUMMED.map((key) => [key, 0])) as Record<_Summed, number>,
  };
  const running = new Map<string, FetchProgress>();
  const present = namesIn(options.destDir);
  const lookups = new _Lookups(options.names, options.servers, pool);
  const width = Math.max(1, Math.min(options.files ?? DEFAULT_BATCH_FILES, MAX_BATCH_FILES));
  const ahead = present === undefined ? undefined : new _ReadAhead({
    names: options.names,
    width,
    lookups,
    present,
    pool,
    limiter,
    cooldown,
    signal: options.signal,
    tls: options.tls,
    sha256Only: options.verify === true,
    onEvent: (event, part) => options.onEvent?.(part.fileName, event),
  });
  const progress = (): BatchProgress => {
    const sum = { ...finished, elapsedMs: performance.now() - startedAt };
    for (const p of running.values()) for (const key of _SUMMED) sum[key] += p[key];
    if (ahead) {
      // The files that took bytes read ahead counted them; the rest were wasted.
      sum.bytesReceived += ahead.counters.bytesReceived - ahead.bytesUsed;
      sum.failovers += ahead.counters.failovers;
      sum.digestMismatches += ahead.counters.digestMismatches;
    }
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

  const fetchOne = async (index: number) => {
    const name = options.names[index]!;
    let last: FetchProgress | undefined;
    let received: SharedFetch["received"];
    try {
      const found = await lookups.entryAt(index);
      const bytes = found && await ahead?.take(index, found);
      received = bytes && { bytes, onUsed: () => ahead!.bytesUsed += bytes.length };
      const locate = () =>
        _locate(name, options.servers, pool, { ...connect, startCommand: options.startCommand });
      const fetchAt = (located: FileInfo & { from: string }, early = received) =>
        fetchFile(
          {
            ...options,
            name,
            shared: { hashes, pool, located, limiter, cooldown, present, received: early },
            onEvent: (event) => options.onEvent?.(name, event),
          },
          (p) => {
            last = p;
            running.set(name, p);
          },
        );
      const result = await fetchAt(found ?? await locate()).catch(async (error) => {
        // An entry looked up ahead (minutes ago, in a batch of large files) that its owner
        // replaced or removed since: the file as it is now, or "no such file".
        if (!(found && error instanceof FetchError && error.changed)) throw error;
        return await fetchAt(await locate(), undefined);
      });
      done({ name, ok: true, result }, result);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      done({ name, ok: false, error }, last);
      // The destination's disk is full: every file after would fail the same way.
      if (_diskFull(error)) diskFull ??= error;
    } finally {
      if (received) ahead?.giveBack(index);
    }
  };

  let next = 0;
  let diskFull: unknown;
  const worker = async () => {
    while (next < options.names.length && !options.signal?.aborted && diskFull === undefined) {
      await fetchOne(next++);
    }
  };
  try {
    // Every file under way ends (a stopped one records what it has) before the pool closes.
    const settled = await Promise.allSettled(
      Array.from({ length: Math.min(width, options.names.length) }, worker),
    );
    options.signal?.throwIfAborted();
    for (const outcome of settled) if (outcome.status === "rejected") throw outcome.reason;
    // Not tried once the disk filled: failed, as the one line already said why (no line each).
    for (const name of options.names.slice(next)) {
      const error = new FetchError(`not fetched: ${(diskFull as Error).message}`, [], {
        cause: diskFull,
      });
      outcomes.push({ name, ok: false, error });
      finished.filesFailed++;
    }
  } finally {
    stopTicker();
    hashes.close();
    // Ctrl-C does not wait for them.
    if (!options.signal?.aborted) await ahead?.reportsSettled();
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
    const found = this.group(group);
    this.group(group + 1);
    try {
      return (await found).get(this.#names[index]!);
    } catch {
      return undefined;
    }
  }

  /** The entries found of the names of `group` (LOOKUP_AHEAD_NAMES names from group * that). */
  group(group: number): Promise<Map<string, FileInfo & { from: string }>> {
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
    let peer: Peer | undefined;
    try {
      let answered: Map<string, FileInfo | undefined>;
      ({ peer, value: answered } = await this.#pool.begin(address, (p) => p.lookupFiles(names)));
      let rest = names;
      while (answered.size > 0) {
        for (const [name, info] of answered) if (info) found.set(name, { ...info, from: address });
        rest = rest.filter((name) => !answered.has(name));
        if (rest.length === 0) break;
        answered = await peer.lookupFiles(rest);
      }
      this.#pool.release(peer);
    } catch (error) {
      peer?.close();
      if (error instanceof ProtocolError && error.code === "UNKNOWN_OP") this.#unsupported = true;
      throw error;
    }
    return found;
  }
}

/**
 * Small files' parts read ahead, a lookup group at a time (the group being
 * fetched and the next), with PartReader.readMany: a replica asked for its
 * share of a group's parts in one request, answered back to back. Only for
 * a small file (one part of at most HASH_HERE_MAX_BYTES) that the
 * destination held nothing of when the batch started; anything not read
 * whole and verified here is left to the file's own fetch, which fails over
 * as any. Each file's bytes are handed out once (take()) and given back
 * (giveBack()) when its fetch ends; a group's buffer, once every file of it
 * was handed out and given back, holds the next group's parts.
 */
class _ReadAhead {
  readonly counters: PartReadCounters = { bytesReceived: 0, failovers: 0, digestMismatches: 0 };
  /** Bytes the files that took them wrote (each counts them as its own). */
  bytesUsed = 0;
  readonly #options: _ReadAheadOptions;
  readonly #groups = new Map<number, _AheadGroup>();
  /** Groups done with: never read again (a file of one may still ask, late). */
  readonly #dropped = new Set<number>();
  /**
   * One reader for the whole batch, made with the first group: a replica
   * that failed is tried last for a while by every later group too.
   */
  #reader: PartReader | undefined;
  /** Instance ids to addresses, from every lookup so far (the reader resolves ids here). */
  readonly #instances: Record<string, string> = {};
  /**
   * Group buffers no file holds any more. A new one per group was a tenth
   * of a batch's client time: the first touch of each fresh page faults.
   */
  readonly #spare: Uint8Array[] = [];

  constructor(options: _ReadAheadOptions) {
    this.#options = options;
  }

  /**
   * The verified bytes of names[index], whose entry is `found`, if they were
   * read ahead; the caller gives them back with giveBack(index) once its
   * fetch of the file has ended.
   */
  async take(
    index: number,
    found: FileInfo & { from: string },
  ): Promise<Uint8Array | undefined> {
    if (!isSmallFile(found.entry)) return undefined;
    const number = Math.floor(index / LOOKUP_AHEAD_NAMES);
    if (this.#dropped.has(number)) return undefined;
    // The files under way span this many groups at most: older ones are done with.
    const kept = Math.ceil(this.#options.width / LOOKUP_AHEAD_NAMES) + 1;
    for (const old of this.#groups.keys()) if (old < number - kept) this.#drop(old);
    const group = this.#group(number);
    if (!this.#dropped.has(number + 1)) this.#group(number + 1);
    const held = await group.parts.catch(() => undefined);
    const name = this.#options.names[index]!;
    const pending = held?.get(name);
    if (!held || pending === undefined) return undefined;
    held.delete(name);
    group.out++;
    if (held.size === 0) this.#drop(number);
    const bytes = await pending;
    if (bytes?.length !== found.entry.size) {
      this.giveBack(index);
      return undefined;
    }
    return bytes;
  }

  /** The fetch of names[index] is over: the bytes take() gave it are no longer used. */
  giveBack(index: number): void {
    const number = Math.floor(index / LOOKUP_AHEAD_NAMES);
    const group = this.#groups.get(number) ?? this.#done.get(number);
    if (!group) return;
    group.out--;
    this.#recycle(number, group);
  }

  /** Waits (a while at most) for the reports of corrupt copies the reading ahead sent. */
  async reportsSettled(): Promise<void> {
    await this.#reader?.reportsSettled();
  }

  /** Dropped groups whose files still hold their bytes. */
  readonly #done = new Map<number, _AheadGroup>();

  #drop(number: number): void {
    const group = this.#groups.get(number);
    this.#groups.delete(number);
    this.#dropped.add(number);
    if (!group) return;
    this.#done.set(number, group);
    // Bytes read but never taken are forgotten with the group.
    group.parts.then((held) => held.clear(), () => {});
    this.#recycle(number, group);
  }

  /** A dropped group that no file holds bytes of any more gives its buffer back. */
  #recycle(number: number, group: _AheadGroup): void {
    if (group.out > 0 || !this.#done.has(number)) return;
    this.#done.delete(number);
    // Only once its read is over: a share may still be receiving into it.
    group.read.finally(() => {
      if (group.space && this.#spare.length < _MAX_SPARE_GROUP_BUFFERS) {
        this.#spare.push(group.space);
      }
    }).catch(() => {});
  }

  #group(number: number): _AheadGroup {
    let group = this.#groups.get(number);
    if (!group) {
      let listed = (_parts: Map<string, Promise<Uint8Array | undefined>>) => {};
      const parts = new Promise<Map<string, Promise<Uint8Array | undefined>>>((resolve) =>
        listed = resolve
      );
      group = { parts, read: Promise.resolve(), space: undefined, out: 0 };
      const read = this.#read(number, group, listed);
      // A failed read lists no parts; every file of the group is then fetched as any.
      group.read = read.catch(() => listed(new Map()));
      this.#groups.set(number, group);
    }
    return group;
  }

  /**
   * Reads group `number`'s small parts into the group's buffer: `listed`
   * gets, per file read ahead, the promise of its verified bytes (undefined
   * when they did not come), settled as each part arrives.
   */
  async #read(
    number: number,
    group: _AheadGroup,
    listed: (parts: Map<string, Promise<Uint8Array | undefined>>) => void,
  ): Promise<void> {
    const { lookups, present, signal } = this.#options;
    const found = await lookups.group(number);
    const parts: PartToRead[] = [];
    let instances: Record<string, string> | undefined;
    for (const [name, info] of found) {
      const { entry } = info;
      if (!isSmallFile(entry)) continue;
      if (_heldNames(name).some((held) => present.has(held))) continue;
      // One lookup's entries share one map.
      if (info.instances !== instances) Object.assign(this.#instances, instances = info.instances);
      this.#reader ??= new PartReader({
        pool: this.#options.pool,
        addressOf: addressResolver({ ...info, instances: this.#instances }),
        limiter: this.#options.limiter,
        cooldown: this.#options.cooldown,
        signal,
        tls: this.#options.tls,
        sha256Only: this.#options.sha256Only,
        counters: this.counters,
        onEvent: this.#options.onEvent,
      });
      parts.push({ fileName: name, index: 0, ...entry.parts[0]! });
    }
    const reader = this.#reader;
    if (parts.length === 0 || reader === undefined || signal?.aborted) return listed(new Map());
    // The group's parts in one buffer (a group holds at most LOOKUP_AHEAD_NAMES).
    const space = group.space = this.#spare.pop() ?? new Uint8Array(_GROUP_BUFFER_BYTES);
    let at = 0;
    const items = parts.map((part) => {
      const into = space.subarray(at, at += part.size);
      let arrived = (_bytes: Uint8Array | undefined) => {};
      const bytes = new Promise<Uint8Array | undefined>((resolve) => arrived = resolve);
      return {
        part,
        sink: new MemoryPartSink(part.size, HASH_HERE_MAX_BYTES, into),
        bytes,
        arrived,
      };
    });
    listed(new Map(items.map(({ part, bytes }) => [part.fileName, bytes])));
    try {
      await reader.readMany(
        items,
        reader.receiveBuffer(HASH_HERE_MAX_BYTES),
        (i, result) => items[i]!.arrived(result?.verified ? items[i]!.sink.bytes : undefined),
      );
    } finally {
      for (const { arrived } of items) arrived(undefined);
    }
  }
}

/** A group of _ReadAhead: its files' parts, its read, their buffer, and how many files hold them. */
interface _AheadGroup {
  /** Per file read ahead, its verified bytes, once the group's entries are known. */
  parts: Promise<Map<string, Promise<Uint8Array | undefined>>>;
  /** Over once nothing is received into `space` any more. */
  read: Promise<void>;
  space: Uint8Array | undefined;
  out: number;
}

/** Room for a group's parts: every file of it small. */
const _GROUP_BUFFER_BYTES = LOOKUP_AHEAD_NAMES * HASH_HERE_MAX_BYTES;
/** Group buffers kept for reuse: the groups a batch of the default width has under way. */
const _MAX_SPARE_GROUP_BUFFERS = 4;

/** The names of what a destination may hold of file `name`: it, its partial and control files. */
function _heldNames(name: string): string[] {
  return [name, ...[PARTIAL_SUFFIX, STATE_SUFFIX].map((suffix) => helperPath(name, suffix))];
}

interface _ReadAheadOptions {
  names: readonly string[];
  /** Files fetched at once. */
  width: number;
  lookups: _Lookups;
  /** The names the destination held as the batch started. */
  present: ReadonlySet<string>;
  pool: PeerPool;
  limiter: RateLimiter | undefined;
  cooldown: ServerCooldown;
  signal: AbortSignal | undefined;
  tls: FetchOptions["tls"];
  /** --verify: parts are checked with their SHA-256, never their XXH3-128. */
  sha256Only: boolean;
  onEvent: (event: PartReadEvent, part: PartToRead) => void;
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
  connect: LocateOptions,
): Promise<FileInfo & { from: string }> {
  const address = servers[Math.floor(Math.random() * servers.length)];
  if (address !== undefined) {
    try {
      const { peer, value: info } = await pool.begin(address, (peer) => peer.getFile(name));
      pool.release(peer);
      if (info.entry.name === name) return { ...info, from: address };
    } catch {
      // Cannot connect, or no answer: the lookup below tries the others.
    }
  }
  return await locateFile(name, servers, connect);
}

/** Whether `error` (down its causes) says the destination's disk is full. */
function _diskFull(error: unknown): boolean {
  for (let at = error, depth = 0; at instanceof Error && depth < 8; at = at.cause, depth++) {
    if (isDiskFull(at)) return true;
  }
  return false;
}
