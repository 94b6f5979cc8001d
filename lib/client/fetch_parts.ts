/**
 * Fetch's parallel tracks: up to --parallel workers, each with its own handle
 * on the work file, take the missing parts (the one on the idlest host of the
 * next few first; then the parts the destination check rejects, as it finds
 * them) and read each with the part reader into the file at its place. The
 * first part that cannot be fetched stops them from taking new parts; parts
 * in flight finish, so a resume has them.
 */
import type { HashPool } from "../hash/hash_pool.ts";
import { sha256FileRangeSync } from "../hash/sha256.ts";
import type { FileEntry } from "../state/manifest.ts";
import { domainOfAddress } from "../state/cluster_view.ts";
import { type Xxh128, xxh128IfAvailable } from "../hash/xxh128.ts";
import type { RejectedParts } from "./destination_check.ts";
import { FilePartSink } from "./file_part_sink.ts";
import { FetchError } from "./fetch_error.ts";
import type { Bitmap } from "./fetch_state.ts";
import type { PartReader } from "./part_reader.ts";

export interface FetchPartsOptions {
  entry: FileEntry;
  reader: PartReader;
  workPath: string;
  /** The directory of the work file, named when its disk is full. */
  destDir: string;
  /**
   * Hashes a part as written (SHA-256), read back from the file: every part
   * under --verify, else those that cannot be checked with their XXH3-128.
   */
  hashes: HashPool;
  /** Check parts with the XXH3-128 of their entry where it has one (not --verify). */
  quickCheck: boolean;
  /** At most this many parts at once (1..MAX_PARALLEL); defaultParallel() when undefined. */
  parallel: number | undefined;
  /** Parts known missing, fetched first. */
  missing: readonly number[];
  /** Parts still being checked: at most `most` of them will be rejected. */
  later: { most: number; rejected: RejectedParts };
  /** Parts the destination holds a first piece of: how many bytes. */
  resumeAt: ReadonlyMap<number, number>;
  signal?: AbortSignal | undefined;
  /** A part is at the destination, verified. */
  onVerified: (index: number) => void;
  /** A part failed and the fetch stops taking new parts. */
  onStopping: () => void;
}

/**
 * Parts of at most this many bytes are written synchronously and hashed on
 * the main thread once written (with libcrypto, where it loads): a round
 * trip to an I/O thread or a hash worker costs more than writing or hashing
 * a few kilobytes.
 */
export const HASH_HERE_MAX_BYTES = 64 * 1024;

/**
 * How far into the queue of missing parts a free track looks for one on an
 * idle host: far enough that every host of a cluster is likely to hold one,
 * near enough that a file of 131,072 parts costs nothing to scan.
 */
export const QUEUE_LOOKAHEAD = 64;

/** Parts read at once by default, at the least (see defaultParallel()). */
export const DEFAULT_PARALLEL = 4;
export const MAX_PARALLEL = 64;
/** With parts on several hosts, at least this many reads at once per host (see defaultParallel()). */
export const PARALLEL_PER_HOST = 2;

/**
 * Parts read at once when --parallel is not given: DEFAULT_PARALLEL, or
 * PARALLEL_PER_HOST per host the file's parts are on if that is more. One
 * host's instances share its uplink, so four reads could use at most four
 * of five hosts: five hosts on 200 Mbit/s uplinks filled 0.58 of a 1 Gbit/s
 * client link with 4 at once, 0.77 with 10 (bench scenario 10).
 */
export function defaultParallel(entry: FileEntry, addressOf: (id: string) => string): number {
  const hosts = new Set<string>();
  for (const part of entry.parts) {
    for (const id of part.replicas) hosts.add(domainOfAddress(addressOf(id)));
  }
  return Math.min(MAX_PARALLEL, Math.max(DEFAULT_PARALLEL, PARALLEL_PER_HOST * hosts.size));
}

/** Fetches the parts; throws the error of the lowest part that failed. */
export async function fetchParts(options: FetchPartsOptions): Promise<void> {
  const queue = [...options.missing];
  const tracks = new _Tracks(options, queue);
  const parallel = options.parallel ??
    defaultParallel(options.entry, (id) => options.reader.addressOf(id));
  const count = Math.min(
    Math.max(1, Math.min(parallel, MAX_PARALLEL)),
    queue.length + options.later.most,
  );
  await Promise.all(Array.from({ length: count }, () => tracks.run()));
  if (tracks.failures.length > 0) {
    tracks.failures.sort((a, b) => a.index - b.index);
    if (options.signal?.aborted) throw options.signal.reason;
    throw tracks.failures[0]!.error;
  }
}

/** The state the tracks share: the queue, and whether they are stopping. */
class _Tracks {
  readonly failures: { index: number; error: unknown }[] = [];
  readonly #options: FetchPartsOptions;
  readonly #queue: number[];
  #stopping = false;

  constructor(options: FetchPartsOptions, queue: number[]) {
    this.#options = options;
    this.#queue = queue;
  }

  /** One track: takes parts until there are none or the fetch stops. */
  async run(): Promise<void> {
    const { later, onVerified } = this.#options;
    const file = Deno.openSync(this.#options.workPath, { read: true, write: true });
    // No larger than the largest part: a 4 KiB file stored with 8 MiB parts
    // took a 1 MiB buffer, whose page faults cost 0.7 ms a file in a batch.
    const { entry } = this.#options;
    const buffer = this.#options.reader.receiveBuffer(Math.min(entry.partSize, entry.size));
    const quick = this.#options.quickCheck ? xxh128IfAvailable() : undefined;
    try {
      while (!this.#stopping) {
        // Then the parts the destination check rejects, as it finds them.
        const index = this.#takeQueued() ?? await later.rejected.take();
        if (index === undefined || this.#stopping) return;
        try {
          await this.#fetchPart(index, file, buffer, quick);
          onVerified(index);
        } catch (error) {
          this.failures.push({ index, error });
          // Stop taking new parts; parts in flight finish so a resume has them.
          this.#stopping = true;
          this.#options.onStopping();
        }
      }
    } finally {
      file.close();
    }
  }

  /**
   * The next missing part: of the first QUEUE_LOOKAHEAD in the queue, the
   * first whose least busy host is idlest. Taking parts in order left a host
   * idle whenever the next parts all had their copies elsewhere.
   */
  #takeQueued(): number | undefined {
    const queue = this.#queue;
    const { entry, reader } = this.#options;
    let best = -1;
    let bestLoad = Infinity;
    for (let i = 0; i < Math.min(queue.length, QUEUE_LOOKAHEAD) && bestLoad > 0; i++) {
      const load = reader.hostLoad(entry.parts[queue[i]!]!.replicas);
      // A part with no replica to read from is taken too: its read fails and says so.
      if (best < 0 || load < bestLoad) [best, bestLoad] = [i, load];
    }
    return best < 0 ? undefined : queue.splice(best, 1)[0];
  }

  async #fetchPart(
    index: number,
    file: Deno.FsFile,
    buffer: Uint8Array,
    quick: Xxh128 | undefined,
  ): Promise<void> {
    const { entry, reader, workPath, destDir, hashes, resumeAt } = this.#options;
    const part = entry.parts[index]!;
    const base = index * entry.partSize;
    const sink = new FilePartSink({
      file,
      base,
      index,
      dir: destDir,
      small: part.size <= HASH_HERE_MAX_BYTES,
      quick: part.xxh128 !== undefined ? quick : undefined,
      // A small part is read back through this track's own handle.
      hash: async () =>
        (part.size <= HASH_HERE_MAX_BYTES
          ? sha256FileRangeSync(file, base, part.size)
          : undefined) ??
          await hashes.hashRange({ path: workPath, start: base, length: part.size }),
    });
    await reader.read(
      {
        fileName: entry.name,
        index,
        digest: part.digest,
        xxh128: quick ? part.xxh128 : undefined,
        size: part.size,
        replicas: part.replicas,
      },
      sink,
      { start: resumeAt.get(index) ?? 0, buffer },
    );
  }
}

/** Throws unless every part was verified at the destination or fetched and verified. */
export function assertAllVerified(entry: FileEntry, verified: Bitmap): void {
  const unverified = [...Array(entry.parts.length).keys()].filter((i) => !verified.has(i));
  if (unverified.length > 0) {
    throw new FetchError(
      `Parts ${unverified.join(", ")} of ${JSON.stringify(entry.name)} were not verified`,
      unverified,
    );
  }
}
