/**
 * Fetching a file by name: find its entry, see what the destination already
 * holds, pull the missing parts from several replicas at once, fail over
 * mid-part, verify every part, then put the file in place. README.md explains
 * the algorithm in numbered steps; this file follows them.
 */
import { basename, join } from "../base/paths.ts";
import { ProtocolError } from "../wire/errors.ts";
import { FetchError } from "./fetch_error.ts";
import { addressResolver, locateFile } from "./locate.ts";
import {
  Bitmap,
  currentBootId,
  type FetchState,
  fileStamp,
  loadFetchState,
  saveFetchState,
  stampMatches,
  stateSurvived,
} from "./fetch_state.ts";
import { deadline, every } from "../base/deadline.ts";
import { syncDir } from "../base/fs_util.ts";
import { acquireFileLock } from "../base/lock.ts";
import type { FileEntry } from "../state/manifest.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_STALL_TIMEOUT_MS, Peer } from "./peer.ts";
import { PeerPool } from "./peer_pool.ts";
import { writeAll } from "../wire/frame.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import {
  DEFAULT_HASH_WORKERS,
  type HashAlgorithm,
  HashPool,
  HashUnavailableError,
  RECEIVE_HASH_WORKERS,
} from "../hash/hash_pool.ts";
import type { TlsClientOptions } from "../wire/tls.ts";

/** Bytes read from a socket and written to disk at a time. */
export const RECEIVE_CHUNK_BYTES = 1024 * 1024;
/** How often verified progress is flushed and recorded in the control file. */
export const STATE_SAVE_INTERVAL_MS = 1_000;
/** A server that failed is avoided by other parts for this long. */
export const FAILED_SERVER_COOLDOWN_MS = 10_000;
/** Tries per replica per part before that replica is given up on for the part. */
export const ATTEMPTS_PER_REPLICA = 2;
/**
 * How long a fetch that is over waits for its reports of corrupt copies to be
 * answered (the instance re-hashes its copy and quarantines it), so that the
 * process exiting does not cut them off.
 */
export const REPORT_GRACE_MS = 3_000;
export const DEFAULT_PARALLEL = 4;
export const MAX_PARALLEL = 64;

export { FetchError } from "./fetch_error.ts";

export const PARTIAL_SUFFIX = ".fts-partial";
export const STATE_SUFFIX = ".fts-state";
/** Held while a fetch works on NAME in its directory; deleted at the end. */
export const LOCK_SUFFIX = ".fts-lock";
/**
 * Telling an existing file apart: when one of its first, middle and last whole
 * parts is wrong, this many more are hashed, and it counts as a copy of the
 * file (worked on in place) if at least this share of them all is right.
 */
export const SAME_FILE_EXTRA_SAMPLES = 5;
export const SAME_FILE_MIN_SHARE = 0.75;

/**
 * How the bytes a destination already holds are checked: with each part's
 * XXH3-128 when the entry has them all (a fraction of SHA-256's cost, see
 * xxh128.ts), else, or with --verify, with its SHA-256. Bytes received are
 * always checked with SHA-256.
 */
export interface LocalCheck {
  algorithm: HashAlgorithm;
}

export function localCheck(entry: FileEntry, verify: boolean): LocalCheck {
  if (!verify && entry.parts.every((part) => part.xxh128 !== undefined)) {
    return { algorithm: "xxh128" };
  }
  return { algorithm: "sha256" };
}

/** The parts the destination check rejects, handed to the fetch as each is found. */
export class RejectedParts {
  readonly #found: number[] = [];
  readonly #onFirst: () => void;
  #any = false;
  #ended = false;
  #wake: (() => void)[] = [];

  /** `onFirst` runs when the first part is rejected (fetch loads SHA-256 then). */
  constructor(onFirst: () => void = () => {}) {
    this.#onFirst = onFirst;
  }

  add(index: number): void {
    if (!this.#any) {
      this.#any = true;
      this.#onFirst();
    }
    this.#found.push(index);
    this.#notify();
  }

  /** The check is over: no more parts come. */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** The next rejected part, waiting for one; undefined once the check ended and all were taken. */
  async take(): Promise<number | undefined> {
    for (;;) {
      const index = this.#found.shift();
      if (index !== undefined || this.#ended) return index;
      await new Promise<void>((resolve) => this.#wake.push(resolve));
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const resolve of wake) resolve();
  }
}

export interface FetchOptions {
  name: string;
  destDir: string;
  /** Addresses ("host:port") to ask for the file's entry. */
  servers: string[];
  parallel?: number;
  limitRateBytesPerSecond?: number;
  /**
   * Re-hash every local part instead of trusting the control file, with
   * SHA-256 rather than the faster XXH3-128.
   */
  verify?: boolean;
  /**
   * Flush the file to disk before putting it in place, so a power loss right
   * after the fetch cannot leave unwritten blocks in it (like rsync --fsync).
   */
  fsync?: boolean;
  stallTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Speak TLS to every instance, trusting these CAs. */
  tls?: TlsClientOptions | undefined;
  signal?: AbortSignal;
  onEvent?: (event: FetchEvent) => void;
}

export type FetchEvent =
  | { type: "entry"; entry: FileEntry; from: string }
  | { type: "waiting"; path: string }
  | { type: "checking"; workPath: string; usingControlFile: boolean }
  | { type: "failover"; part: number; from: string; at: number; reason: string }
  | { type: "mismatch"; part: number; replicas: string[] }
  | { type: "part"; part: number; from: string };

export interface FetchProgress {
  name: string;
  phase: "locating" | "checking" | "fetching" | "done";
  size: number;
  parts: number;
  /** Bytes and parts found already correct at the destination. */
  bytesPresent: number;
  partsPresent: number;
  /** Bytes and parts fetched and verified in this run. */
  bytesFetched: number;
  partsFetched: number;
  /** Part bytes received from the network, verified or not. */
  bytesReceived: number;
  /** Bytes hashed while checking the destination. */
  bytesChecked: number;
  /** The digest the destination's bytes are checked with (see localCheck()). */
  localDigest: HashAlgorithm;
  failovers: number;
  digestMismatches: number;
  elapsedMs: number;
}

export interface FetchResult extends FetchProgress {
  path: string;
}

/** A local disk problem: no other replica can fix it, so the fetch stops. */
class _LocalWriteError extends Error {}

/** Fetches a file into `destDir`. Resolves only when every byte is verified. */
export async function fetchFile(
  options: FetchOptions,
  onProgress?: (progress: FetchProgress) => void,
): Promise<FetchResult> {
  const fetcher = new _Fetcher(options, onProgress);
  return await fetcher.run();
}

class _Fetcher {
  readonly #options: FetchOptions;
  readonly #onProgress: ((progress: FetchProgress) => void) | undefined;
  readonly #startedAt = performance.now();
  readonly #cooldown = new Map<string, number>();
  readonly #active = new Map<string, number>();
  /** Reports of corrupt copies still being sent or answered. */
  readonly #reports = new Set<Promise<void>>();
  #progress: FetchProgress;

  constructor(options: FetchOptions, onProgress?: (progress: FetchProgress) => void) {
    this.#options = options;
    this.#onProgress = onProgress;
    this.#progress = {
      name: options.name,
      phase: "locating",
      size: 0,
      parts: 0,
      bytesPresent: 0,
      partsPresent: 0,
      bytesFetched: 0,
      partsFetched: 0,
      bytesReceived: 0,
      bytesChecked: 0,
      // Until the entry says whether its parts have fast digests.
      localDigest: options.verify ? "sha256" : "xxh128",
      failovers: 0,
      digestMismatches: 0,
      elapsedMs: 0,
    };
  }

  get progress(): FetchProgress {
    return { ...this.#progress, elapsedMs: performance.now() - this.#startedAt };
  }

  #emit(event: FetchEvent): void {
    this.#options.onEvent?.(event);
  }

  async run(): Promise<FetchResult> {
    const options = this.#options;
    // Timers here are deadline.ts's: a fetch that sets no setTimeout never
    // loads node:timers (about 4 ms of its start).
    const stopTicker = this.#onProgress
      ? every(200, () => this.#onProgress?.(this.progress))
      : () => {};
    // Every part is verified by hashing it where it lies, in worker threads:
    // the parts the destination already holds, and each fetched part once its
    // bytes are written (so the check covers what reached the disk, and the
    // main thread only moves bytes). A worker takes ~45 ms to start: they
    // start now, while the entry is fetched, and load the hash they need
    // first: XXH3-128 (see localCheck()) when the destination has bytes to
    // check, else SHA-256 for the parts received. Checking bytes on disk is
    // bound by reading them, and takes a worker per core; hashing what arrives
    // takes fewer (see RECEIVE_HASH_WORKERS).
    const finalPath = join(options.destDir, options.name);
    const bytesOnDisk = [finalPath, finalPath + PARTIAL_SUFFIX].some((path) => {
      try {
        return Deno.lstatSync(path).isFile;
      } catch {
        return false;
      }
    });
    const hashes = new HashPool({
      workers: bytesOnDisk ? DEFAULT_HASH_WORKERS : RECEIVE_HASH_WORKERS,
    });
    hashes.load(bytesOnDisk && !options.verify ? "xxh128" : "sha256");
    try {
      return await this.#run(options, hashes);
    } finally {
      hashes.close();
      // Ctrl-C does not wait for them.
      if (!options.signal?.aborted) await this.#reportsSettled();
      stopTicker();
      this.#onProgress?.(this.progress);
    }
  }

  async #run(options: FetchOptions, hashes: HashPool): Promise<FetchResult> {
    // Step 1: the entry, from any live server.
    const info = await locateFile(options.name, options.servers, {
      ...(options.connectTimeoutMs !== undefined
        ? { connectTimeoutMs: options.connectTimeoutMs }
        : {}),
      ...(options.stallTimeoutMs !== undefined ? { stallTimeoutMs: options.stallTimeoutMs } : {}),
      tls: options.tls,
    });
    const entry = info.entry;
    const addressOf = addressResolver(info);
    this.#emit({ type: "entry", entry, from: info.from });
    Object.assign(this.#progress, { size: entry.size, parts: entry.parts.length });

    let destInfo: Deno.FileInfo;
    try {
      destInfo = await Deno.stat(options.destDir);
    } catch (cause) {
      throw new FetchError(`Destination directory ${options.destDir} does not exist`, [], {
        cause,
      });
    }
    if (!destInfo.isDirectory) {
      throw new FetchError(`Destination ${options.destDir} is not a directory`, []);
    }
    const finalPath = join(options.destDir, entry.name);
    // One fetch at a time per destination file: a second one waits, then finds
    // the file complete (or resumes what the first left).
    const release = await acquireFileLock(finalPath + LOCK_SUFFIX, {
      signal: options.signal,
      onWaiting: () => this.#emit({ type: "waiting", path: finalPath }),
    });
    try {
      return await this.#fetchInto(entry, finalPath, addressOf, hashes);
    } finally {
      await release();
    }
  }

  async #fetchInto(
    entry: FileEntry,
    finalPath: string,
    addressOf: (id: string) => string,
    hashes: HashPool,
  ): Promise<FetchResult> {
    const options = this.#options;
    const partialPath = finalPath + PARTIAL_SUFFIX;
    const statePath = finalPath + STATE_SUFFIX;
    const final = await Deno.lstat(finalPath).catch(() => undefined);
    if (final && !final.isFile && !final.isSymlink) {
      throw new FetchError(`Destination ${finalPath} exists and is not a regular file`, []);
    }
    const partial = await Deno.lstat(partialPath).catch(() => undefined);
    if (partial && !partial.isFile) {
      throw new FetchError(
        `${partialPath} exists and is not a regular file; remove it and run the same command again`,
        [],
      );
    }
    // Work in the partial file of an earlier run, else in place on an existing
    // destination that is (a copy of) this file, its bytes being what resume
    // is for, else in a new partial file. Never in place through a link: the
    // bytes would land in the file it points to (or shares with another name);
    // a fetch into the partial file ends by renaming it over the link instead.
    const state = await loadFetchState(statePath);
    const local = localCheck(entry, options.verify === true);
    this.#progress.localDigest = local.algorithm;
    /** Parts of an existing destination found right while telling whether it is this file. */
    const sampled = new Set<number>();
    const workPath = partial ? partialPath : final?.isFile && final.nlink === 1 &&
        await this.#isSameFile(entry, finalPath, state, hashes, local, sampled)
      ? finalPath
      : partialPath;

    let work: Deno.FsFile;
    try {
      work = await Deno.open(workPath, { read: true, write: true, create: true });
    } catch (cause) {
      throw new FetchError(`Cannot open ${workPath} for writing`, [], { cause });
    }
    try {
      // Step 2: what is already there.
      this.#progress.phase = "checking";
      const bootId = await currentBootId();
      const verified = new Bitmap(entry.parts.length);
      const resumeAt = new Map<number, number>();
      const whole = await this.#checkDestination(
        entry,
        work,
        workPath,
        options.verify ? undefined : state,
        bootId,
        verified,
        resumeAt,
        workPath === finalPath ? sampled : new Set(),
      );
      // The parts the destination holds whole are hashed while the parts it
      // lacks are fetched; each one that fails joins the queue at once.
      const rejected = new RejectedParts(() => hashes.load("sha256"));
      // A fetch that stops (a part that cannot be fetched, Ctrl-C) stops the
      // check too, instead of reading the rest of the file first.
      const stopCheck = new AbortController();
      const onAbort = () => stopCheck.abort();
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      const checked = this.#checkWholeParts(
        entry,
        workPath,
        hashes,
        local,
        whole,
        verified,
        rejected,
        stopCheck.signal,
      ).finally(() => options.signal?.removeEventListener("abort", onAbort));
      // A control file says which parts are right, and a later run fetches
      // the others without checking them: so none is written until every part
      // the destination holds has been checked (a fetch stopped before that
      // leaves the next run to check them again, and to find right the parts
      // fetched meanwhile).
      let checkComplete = false;
      const saveState = async () => {
        if (!checkComplete) return;
        const snapshot = new Bitmap(verified.size, verified.bytes.slice());
        // Without a boot id a crash could not be told apart later, so the data
        // is flushed first; only parts verified before the flush are recorded.
        if (bootId === undefined) await work.syncData();
        // After the snapshot: a write in between only makes the stamp newer.
        const stamp = fileStamp(await work.stat());
        await saveFetchState(statePath, {
          name: entry.name,
          contentId: entry.contentId,
          size: entry.size,
          partSize: entry.partSize,
          workFile: basename(workPath),
          verified: snapshot,
          bootId,
          stamp,
        });
      };
      const { size: workSize } = await work.stat();
      if (workSize < entry.size) await work.truncate(entry.size);

      // Steps 3-5: the missing parts, several at once, with failover.
      const checking = new Set(whole);
      const missing: number[] = [];
      for (let i = 0; i < entry.parts.length; i++) {
        if (!verified.has(i) && !checking.has(i)) missing.push(i);
      }
      // Received parts are checked with SHA-256: its code loads while they arrive.
      if (missing.length > 0 || resumeAt.size > 0) hashes.load("sha256");
      let dirty = false;
      let saving: Promise<void> = Promise.resolve();
      const stopSaver = every(STATE_SAVE_INTERVAL_MS, () => {
        if (!dirty) return;
        dirty = false;
        saving = saving.then(saveState).catch(() => {
          dirty = true;
        });
      });
      const checkDone = () => {
        this.#progress.phase = "fetching";
        // Record what an existing destination already holds, in case we stop.
        if (this.#progress.partsPresent > 0 && workPath === finalPath) dirty = true;
      };
      void checked.then((complete) => {
        checkComplete = complete;
        checkDone();
      }, checkDone);
      if (whole.length === 0) this.#progress.phase = "fetching";
      let failure: unknown;
      try {
        await this.#fetchParts(
          entry,
          workPath,
          hashes,
          missing,
          { most: whole.length, rejected },
          resumeAt,
          addressOf,
          (index) => {
            verified.set(index);
            dirty = true;
          },
          onAbort,
        );
        // Stopped: the check may have ended early, so parts are unverified.
        options.signal?.throwIfAborted();
        // Every part was either verified at the destination or fetched and verified.
        const unverified = [...Array(entry.parts.length).keys()].filter((i) => !verified.has(i));
        if (unverified.length > 0) {
          throw new FetchError(
            `Parts ${unverified.join(", ")} of ${JSON.stringify(entry.name)} were not verified`,
            unverified,
          );
        }
      } catch (error) {
        failure = error;
      } finally {
        stopSaver();
        await checked.catch(() => {});
        await saving;
      }
      if (failure !== undefined) {
        await saveState().catch(() => {});
        throw failure;
      }

      // Step 6: every part verified; put the file in place.
      if (workSize > entry.size) await work.truncate(entry.size);
      if (options.fsync) await work.sync();
      work.close();
      if (workPath !== finalPath) await Deno.rename(workPath, finalPath);
      await Deno.remove(statePath).catch(() => {});
      if (options.fsync) await syncDir(options.destDir);
      this.#progress.phase = "done";
      return { ...this.progress, path: finalPath };
    } finally {
      try {
        work.close();
      } catch {
        // Closed on success already.
      }
    }
  }

  /**
   * Whether an existing destination holds this file (whole, cut short, or
   * damaged here and there) rather than something else of the same name: a
   * control file of an earlier fetch into it says so (and the file is as it
   * was then), else its first, middle and last whole parts hash right, or 3/4
   * of those and SAME_FILE_EXTRA_SAMPLES more. Another file is replaced only
   * once every part is verified (through the partial file), so a fetch that
   * fails leaves it as it was.
   */
  async #isSameFile(
    entry: FileEntry,
    path: string,
    state: FetchState | undefined,
    hashes: HashPool,
    local: LocalCheck,
    /** Gets the indexes of the parts that hashed right. */
    sampled: Set<number>,
  ): Promise<boolean> {
    const info = await Deno.stat(path);
    if (
      state?.contentId === entry.contentId && state.workFile === basename(path) &&
      stampMatches(state, info)
    ) {
      return true;
    }
    const whole = entry.parts.findLastIndex((part, index) =>
      index * entry.partSize + part.size <= info.size
    );
    if (whole < 0) return false;
    // First, middle and last whole part; if one is wrong (a damaged copy, or
    // another file that merely starts or ends the same), more, evenly spread.
    const first = [...new Set([0, Math.floor(whole / 2), whole])];
    const more = [
      ...new Set(
        Array.from(
          { length: SAME_FILE_EXTRA_SAMPLES },
          (_, i) => Math.round(((i + 1) * whole) / (SAME_FILE_EXTRA_SAMPLES + 1)),
        ),
      ),
    ].filter((index) => !first.includes(index));
    // Each round's samples are hashed at once, on all workers.
    const rightOf = (indexes: number[]) =>
      Promise.all(indexes.map(async (index) => {
        if (!(await this.#localPartIsRight(entry, index, path, hashes, local))) return 0;
        sampled.add(index);
        return 1;
      })).then((results) => results.reduce<number>((sum, one) => sum + one, 0));
    let right = await rightOf(first);
    if (right === first.length) return true;
    right += await rightOf(more);
    return right >= SAME_FILE_MIN_SHARE * (first.length + more.length);
  }

  /**
   * Whether the destination holds part `index` whole and right, by `local`'s
   * digest. A worker that cannot load XXH3-128 (no libxxhash and no
   * WebAssembly, say) reads nothing; then this part and every later one are
   * checked with SHA-256, rather than all counting as damaged.
   */
  async #localPartIsRight(
    entry: FileEntry,
    index: number,
    path: string,
    hashes: HashPool,
    local: LocalCheck,
  ): Promise<boolean> {
    const part = entry.parts[index]!;
    const hash = (algorithm: HashAlgorithm) =>
      hashes.hashRange({ path, start: index * entry.partSize, length: part.size, algorithm });
    let algorithm = local.algorithm;
    let result: { digest: string; bytes: number };
    try {
      result = await hash(algorithm);
    } catch (error) {
      if (!(error instanceof HashUnavailableError) || algorithm === "sha256") throw error;
      if (local.algorithm !== "sha256") {
        Object.assign(local, localCheck(entry, true));
        this.#progress.localDigest = local.algorithm;
      }
      algorithm = "sha256";
      result = await hash(algorithm);
    }
    this.#progress.bytesChecked += result.bytes;
    // Compared with the digest of the algorithm used, whatever `local` says by now.
    const expected = algorithm === "sha256" ? part.digest : part.xxh128;
    return result.bytes === part.size && result.digest === expected;
  }

  async #checkDestination(
    entry: FileEntry,
    work: Deno.FsFile,
    workPath: string,
    /** The control file, unless --verify says to ignore it. */
    state: FetchState | undefined,
    bootId: string | undefined,
    verified: Bitmap,
    resumeAt: Map<number, number>,
    /** Whole parts already hashed right (while telling whether the file is this one). */
    known: ReadonlySet<number>,
  ): Promise<number[]> {
    const info = await work.stat();
    const onDisk = info.size;
    const usable = state !== undefined && state.contentId === entry.contentId &&
      state.workFile === basename(workPath) && state.verified.size === entry.parts.length &&
      stateSurvived(state, bootId) && stampMatches(state, info);
    this.#emit({ type: "checking", workPath, usingControlFile: usable });
    const whole: number[] = [];
    for (let index = 0; index < entry.parts.length; index++) {
      const part = entry.parts[index]!;
      const start = index * entry.partSize;
      const end = start + part.size;
      if (usable) {
        if (state.verified.has(index) && end <= onDisk) verified.set(index);
        continue;
      }
      if (start >= onDisk) break;
      if (end <= onDisk) {
        if (known.has(index)) verified.set(index);
        else whole.push(index);
        continue;
      }
      // The destination ends inside this part: keep what is there and fetch
      // only the rest; the digest of the whole part still decides.
      if (onDisk > start) resumeAt.set(index, onDisk - start);
    }
    for (let index = 0; index < entry.parts.length; index++) {
      if (verified.has(index)) {
        this.#progress.partsPresent++;
        this.#progress.bytesPresent += entry.parts[index]!.size;
      }
    }
    return whole;
  }

  /**
   * Hashes the parts the destination holds whole in worker threads, one per
   * core, each reading the file itself: the check runs at the speed of all
   * cores instead of one. True when every part was checked (not stopped).
   */
  async #checkWholeParts(
    entry: FileEntry,
    workPath: string,
    hashes: HashPool,
    local: LocalCheck,
    indexes: number[],
    verified: Bitmap,
    /** Each part that is not right (or could not be read), as soon as that is known. */
    rejected: RejectedParts,
    /** Aborted when the fetch stops: no new part is read (those being read finish). */
    stop: AbortSignal,
  ): Promise<boolean> {
    const queue = [...indexes];
    const next = () => (stop.aborted ? undefined : queue.shift());
    try {
      // Two ranges per worker in flight, so none waits for its next one.
      await Promise.all(Array.from({ length: 2 * hashes.size }, async () => {
        for (let index = next(); index !== undefined; index = next()) {
          const part = entry.parts[index]!;
          let right = false;
          try {
            right = await this.#localPartIsRight(entry, index, workPath, hashes, local);
          } catch {
            // Fetched again, like a damaged part.
          }
          if (right) {
            verified.set(index);
            this.#progress.partsPresent++;
            this.#progress.bytesPresent += part.size;
          } else {
            rejected.add(index);
          }
        }
      }));
      return queue.length === 0;
    } finally {
      rejected.end();
    }
  }

  async #fetchParts(
    entry: FileEntry,
    workPath: string,
    hashes: HashPool,
    missing: number[],
    /** Parts still being checked: at most `most` of them will be rejected. */
    later: { most: number; rejected: RejectedParts },
    /** Parts the destination holds a first piece of: how many bytes. */
    resumeAt: Map<number, number>,
    addressOf: (id: string) => string,
    onVerified: (index: number) => void,
    /** Called when a part fails and the fetch stops taking new parts. */
    onStopping: () => void,
  ): Promise<void> {
    const options = this.#options;
    const parallel = Math.max(1, Math.min(options.parallel ?? DEFAULT_PARALLEL, MAX_PARALLEL));
    const limiter = options.limitRateBytesPerSecond
      ? new RateLimiter(options.limitRateBytesPerSecond)
      : undefined;
    const pool = new PeerPool({
      ...(options.connectTimeoutMs !== undefined
        ? { connectTimeoutMs: options.connectTimeoutMs }
        : {}),
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
      tls: options.tls,
    });
    const queue = [...missing];
    const failures: { index: number; error: unknown }[] = [];
    let stopping = false;
    const worker = async () => {
      const file = await Deno.open(workPath, { read: true, write: true });
      const buffer = new Uint8Array(
        Math.min(RECEIVE_CHUNK_BYTES, limiter?.chunkBytes ?? RECEIVE_CHUNK_BYTES),
      );
      try {
        while (!stopping) {
          // Then the parts the destination check rejects, as it finds them.
          const index = queue.shift() ?? await later.rejected.take();
          if (index === undefined || stopping) return;
          try {
            await this.#fetchPart(entry, index, file, buffer, resumeAt.get(index) ?? 0, {
              pool,
              limiter,
              addressOf,
              verify: () =>
                hashes.hashRange({
                  path: workPath,
                  start: index * entry.partSize,
                  length: entry.parts[index]!.size,
                }),
            });
            onVerified(index);
            this.#progress.partsFetched++;
            this.#progress.bytesFetched += entry.parts[index]!.size;
          } catch (error) {
            failures.push({ index, error });
            // Stop taking new parts; parts in flight finish so a resume has them.
            stopping = true;
            onStopping();
          }
        }
      } finally {
        file.close();
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(parallel, queue.length + later.most) }, () => worker()),
      );
    } finally {
      pool.closeAll();
    }
    if (failures.length > 0) {
      failures.sort((a, b) => a.index - b.index);
      if (options.signal?.aborted) throw options.signal.reason;
      throw failures[0]!.error;
    }
  }

  #pickReplica(
    replicas: readonly string[],
    failures: Map<string, number>,
    index: number,
    addressOf: (id: string) => string,
  ): string | undefined {
    const now = Date.now();
    const candidates = replicas
      .map((id, position) => ({ id, position }))
      .filter(({ id }) => (failures.get(id) ?? 0) < ATTEMPTS_PER_REPLICA);
    if (candidates.length === 0) return undefined;
    const n = replicas.length;
    const score = ({ id, position }: { id: string; position: number }) => {
      const address = addressOf(id);
      const cooling = now - (this.#cooldown.get(address) ?? -Infinity) < FAILED_SERVER_COOLDOWN_MS;
      return [
        failures.get(id) ?? 0,
        cooling ? 1 : 0,
        this.#active.get(address) ?? 0,
        // Spread parts over replicas so parallel streams come from different servers.
        (position - index % n + n) % n,
      ];
    };
    candidates.sort((a, b) => {
      const sa = score(a);
      const sb = score(b);
      for (let i = 0; i < sa.length; i++) if (sa[i] !== sb[i]) return sa[i]! - sb[i]!;
      return 0;
    });
    return candidates[0]!.id;
  }

  async #fetchPart(
    entry: FileEntry,
    index: number,
    file: Deno.FsFile,
    buffer: Uint8Array,
    /** Bytes of the part the destination already holds. */
    present: number,
    context: {
      pool: PeerPool;
      limiter: RateLimiter | undefined;
      addressOf: (id: string) => string;
      /** Hashes the part as written at the destination. */
      verify: () => Promise<{ digest: string; bytes: number }>;
    },
  ): Promise<void> {
    const { pool, limiter, addressOf, verify } = context;
    const signal = this.#options.signal;
    const part = entry.parts[index]!;
    const base = index * entry.partSize;
    let reached = present;
    // Bytes of this part taken from the destination, not from any replica.
    let localPrefix = reached;
    const contributors = new Set<string>();
    const failures = new Map<string, number>();
    const reasons: string[] = [];
    while (true) {
      signal?.throwIfAborted();
      const id = this.#pickReplica(part.replicas, failures, index, addressOf);
      if (id === undefined) {
        throw new FetchError(
          `Cannot fetch part ${index} of ${
            JSON.stringify(entry.name)
          }: all ${part.replicas.length} replicas failed`,
          [index],
          { cause: new Error(reasons.join("; ")) },
        );
      }
      const address = addressOf(id);
      if ((failures.get(id) ?? 0) > 0) await new Promise<void>((r) => deadline(200, r));
      let peer: Peer | undefined;
      this.#active.set(address, (this.#active.get(address) ?? 0) + 1);
      try {
        peer = await pool.acquire(address);
        await peer.requestPart(part.digest, reached, part.size - reached);
        contributors.add(id);
        try {
          await file.seek(base + reached, Deno.SeekMode.Start);
        } catch (cause) {
          throw new _LocalWriteError(`Cannot seek in the destination`, { cause });
        }
        while (reached < part.size) {
          const n = await peer.reader.readBody(
            buffer.subarray(0, Math.min(buffer.length, part.size - reached)),
          );
          if (n === 0) throw new ProtocolError("BAD_FRAME", "Body ended early");
          try {
            await writeAll(file, buffer.subarray(0, n));
          } catch (cause) {
            throw new _LocalWriteError(
              (cause as { code?: unknown } | null)?.code === "ENOSPC"
                ? `The disk holding ${this.#options.destDir} is full; free some space or choose another DEST_DIR, then run the same command again to resume`
                : `Cannot write to the destination: ${
                  cause instanceof Error ? cause.message : cause
                }`,
              { cause },
            );
          }
          reached += n;
          this.#progress.bytesReceived += n;
          if (limiter) await limiter.take(n);
          signal?.throwIfAborted();
        }
        pool.release(peer);
      } catch (error) {
        peer?.close();
        if (error instanceof _LocalWriteError) {
          throw new FetchError(error.message, [index], { cause: error.cause });
        }
        signal?.throwIfAborted();
        const reason = error instanceof Error ? error.message : String(error);
        reasons.push(`${id}: ${reason}`);
        const permanent = error instanceof ProtocolError &&
          ["NOT_FOUND", "QUARANTINED", "BAD_RANGE"].includes(error.code);
        failures.set(id, permanent ? ATTEMPTS_PER_REPLICA : (failures.get(id) ?? 0) + 1);
        if (!permanent) this.#cooldown.set(address, Date.now());
        this.#progress.failovers++;
        this.#emit({ type: "failover", part: index, from: id, at: reached, reason });
        continue;
      } finally {
        this.#active.set(address, (this.#active.get(address) ?? 1) - 1);
      }
      let digest: string;
      try {
        const hashed = await verify();
        digest = hashed.bytes === part.size ? hashed.digest : "(short)";
      } catch (cause) {
        throw new FetchError(
          `Cannot read back part ${index} from the destination: ${
            cause instanceof Error ? cause.message : cause
          }`,
          [index],
          { cause },
        );
      }
      if (digest === part.digest) {
        this.#emit({ type: "part", part: index, from: id });
        this.#cooldown.delete(address);
        return;
      }
      if (localPrefix > 0) {
        // The bytes already at the destination may be what is wrong: start the
        // part over from byte 0 before blaming any replica.
        localPrefix = 0;
        contributors.clear();
        reached = 0;
        continue;
      }
      // Wrong bytes: tell every replica that contributed, and start the part over
      // without them.
      this.#progress.digestMismatches++;
      this.#emit({ type: "mismatch", part: index, replicas: [...contributors] });
      for (const bad of contributors) {
        failures.set(bad, ATTEMPTS_PER_REPLICA);
        reasons.push(`${bad}: digest mismatch`);
        this.#report(addressOf(bad), part.digest);
      }
      contributors.clear();
      reached = 0;
    }
  }

  #report(address: string, digest: string): void {
    // Best effort: the instance re-hashes its copy and quarantines it if bad.
    // The fetch goes on meanwhile; run() waits for the answers at the end.
    const report = (async () => {
      const peer = await Peer.connect(address, {
        connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
        stallTimeoutMs: 10_000,
        tls: this.#options.tls,
      });
      try {
        await peer.report(digest);
      } finally {
        peer.close();
      }
    })().catch(() => {}).finally(() => this.#reports.delete(report));
    this.#reports.add(report);
  }

  /** Waits, at most REPORT_GRACE_MS, for the reports still in flight. */
  async #reportsSettled(): Promise<void> {
    if (this.#reports.size === 0) return;
    let cancel = () => {};
    await Promise.race([
      Promise.all(this.#reports),
      new Promise<void>((resolve) => cancel = deadline(REPORT_GRACE_MS, resolve)),
    ]);
    cancel();
  }
}
