/**
 * Fetching a file by name: find its entry, see what the destination already
 * holds, pull the missing parts from several replicas at once, fail over
 * mid-part, verify every part, then put the file in place. README.md explains
 * the algorithm in numbered steps; this file runs them, with the pieces in
 * their own files: locate.ts (step 1), destination_check.ts (step 2),
 * fetch_parts.ts and part_reader.ts (steps 3-5), fetch_state.ts (the control
 * file that makes a fetch resumable).
 */
import { every } from "../base/deadline.ts";
import { lstatOrUndefined, removeQuietly, syncDir } from "../base/fs_util.ts";
import { MAX_LOCK_ATTEMPTS, waitForLock } from "../base/lock.ts";
import { holdsWholeFile, isUnwritable, lockUnlessDone } from "./read_only_destination.ts";
import { join } from "../base/paths.ts";
import { RateLimiter } from "../base/rate_limiter.ts";
import { type HashAlgorithm, HashPool, RECEIVE_HASH_WORKERS } from "../hash/hash_pool.ts";
import type { FileEntry } from "../state/manifest.ts";
import type { TlsClientOptions } from "../wire/tls.ts";
import {
  checkDestDir,
  checkHashWorkers,
  DestinationCheck,
  type DestinationPlan,
  localCheck,
  RejectedParts,
} from "./destination_check.ts";
import { FetchError } from "./fetch_error.ts";
import { assertAllVerified, fetchParts, HASH_HERE_MAX_BYTES } from "./fetch_parts.ts";
import { fetchSmallFile, isSmallFile, type ReceivedPart } from "./fetch_small.ts";
import {
  Bitmap,
  ControlFileSaver,
  currentBootId,
  type FetchState,
  loadFetchState,
  unstretch,
} from "./fetch_state.ts";
import { addressResolver, explainChange, locateFile, type LocateOptions } from "./locate.ts";
import { PartReader, type PartReaderOptions, type PartReadEvent } from "./part_reader.ts";
import { DEFAULT_STALL_TIMEOUT_MS, type FileInfo } from "./peer.ts";
import { PeerPool } from "./peer_pool.ts";
import {
  dropLeftoverPartial,
  helperPath,
  holdsPartial,
  LOCK_SUFFIX,
  ownPartial,
  PARTIAL_SUFFIX,
  refuseHelperName,
  refuseOddHelpers,
  STATE_SUFFIX,
} from "./helper_paths.ts";

/** How often verified progress is flushed and recorded in the control file. */
export const STATE_SAVE_INTERVAL_MS = 1_000;
/** How often onProgress is called while a fetch runs. */
export const PROGRESS_INTERVAL_MS = 200;
export interface FetchOptions {
  name: string;
  destDir: string;
  /** Addresses ("host:port") to ask for the file's entry. */
  servers: string[];
  /** The command that starts that cluster, for a message when no server answers. */
  startCommand?: string | undefined;
  parallel?: number;
  limitRateBytesPerSecond?: number;
  /** Re-hash every local part (SHA-256, not XXH3-128) instead of trusting the control file. */
  verify?: boolean;
  /** Flush the file before it is put in place (as rsync --fsync): whole after a power loss. */
  fsync?: boolean;
  stallTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Speak TLS to every instance, trusting these CAs. */
  tls?: TlsClientOptions | undefined;
  signal?: AbortSignal;
  onEvent?: (event: FetchEvent) => void;
  /** What a batch of fetches shares (fetch_batch.ts); a single fetch makes its own. */
  shared?: SharedFetch;
}

/**
 * What a batch of fetches shares, not made per file: hash workers (~45 ms to
 * start), connections, the entry looked up on one of them, the rate limit.
 * The batch owns them: a fetch closes neither the pool nor the workers.
 */
export interface SharedFetch {
  hashes: HashPool;
  pool: PeerPool;
  located?: FileInfo & { from: string };
  limiter?: RateLimiter | undefined;
  cooldown?: PartReaderOptions["cooldown"];
  /** The names the destination directory held when the batch started (see fetch_small.ts). */
  present?: ReadonlySet<string> | undefined;
  /** The one part of the `located` small file, received ahead by a batch and verified. */
  received?: ReceivedPart | undefined;
}

export type FetchEvent =
  | { type: "entry"; entry: FileEntry; from: string }
  | { type: "waiting"; path: string }
  | { type: "checking"; workPath: string; usingControlFile: boolean }
  | PartReadEvent;

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

/** Fetches a file into `destDir`. Resolves only when every byte is verified. */
export async function fetchFile(
  options: FetchOptions,
  onProgress?: (progress: FetchProgress) => void,
): Promise<FetchResult> {
  refuseHelperName(options.name);
  return await new _Fetcher(options, onProgress).run();
}

/** Where a fetch works, once the entry is known and the destination locked. */
interface _Work {
  entry: FileEntry;
  finalPath: string;
  /** The file the parts are written into: the partial file, or the destination itself. */
  workPath: string;
  file: Deno.FsFile;
  statePath: string;
  /** The control file of an earlier run, unless --verify says to ignore it. */
  state: FetchState | undefined;
  check: DestinationCheck;
  /** Parts of an existing destination found right while telling whether it is this file. */
  sampled: ReadonlySet<number>;
  hashes: HashPool;
  reader: PartReader;
  /** The reader's connections: closed once the parts are fetched. */
  pool: PeerPool;
  /** This run made the partial file, with no control file: removed if no part is verified. */
  fresh: boolean;
}

/** The check of the parts the destination holds whole, running beside the fetch. */
interface _BackgroundCheck {
  /** True when every part was checked (not stopped). */
  done: Promise<boolean>;
  rejected: RejectedParts;
  /** Stops the check from taking new parts. */
  stop: () => void;
}

class _Fetcher {
  readonly #options: FetchOptions;
  readonly #onProgress: ((progress: FetchProgress) => void) | undefined;
  readonly #startedAt = performance.now();
  #progress: FetchProgress;
  /** Made for a part to read (a small file read ahead has none); its reports awaited at the end. */
  #reader: PartReader | undefined;

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

  get #connectOptions(): LocateOptions {
    const { connectTimeoutMs, stallTimeoutMs, tls, startCommand } = this.#options;
    return {
      ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
      ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
      tls,
      startCommand,
    };
  }

  async run(): Promise<FetchResult> {
    const options = this.#options;
    // Timers are deadline.ts's: with no setTimeout, node:timers never loads (~4 ms of a start).
    const stopTicker = this.#onProgress
      ? every(PROGRESS_INTERVAL_MS, () => this.#onProgress?.(this.progress))
      : () => {};
    // Worker threads hash the parts the destination holds, and fetched parts read back for SHA-256
    // (FilePartSink). A worker takes ~45 ms to start: with bytes on disk to check they start now;
    // else once a part needs one (a batch's too: it does not look, nor make the path to look at).
    // Checking takes a worker per core; hashing what arrives, fewer (RECEIVE_HASH_WORKERS).
    const finalPath = options.shared ? "" : join(options.destDir, options.name);
    const bytesOnDisk = !options.shared &&
      [finalPath, helperPath(finalPath, PARTIAL_SUFFIX)].some((path) =>
        lstatOrUndefined(path)?.isFile
      );
    const hashes = options.shared?.hashes ?? new HashPool({
      workers: bytesOnDisk
        ? checkHashWorkers({ algorithm: options.verify ? "sha256" : "xxh128" })
        : RECEIVE_HASH_WORKERS,
    });
    if (bytesOnDisk) hashes.load(options.verify ? "sha256" : "xxh128");
    try {
      return await this.#run(hashes);
    } finally {
      if (!options.shared) hashes.close();
      // Ctrl-C does not wait for them.
      if (!options.signal?.aborted) await this.#reader?.reportsSettled();
      stopTicker();
      this.#onProgress?.(this.progress);
    }
  }

  async #run(hashes: HashPool): Promise<FetchResult> {
    const options = this.#options;
    // Step 1: the entry, from any live server.
    const info = options.shared?.located ??
      await locateFile(options.name, options.servers, this.#connectOptions);
    const entry = info.entry;
    this.#emit({ type: "entry", entry, from: info.from });
    Object.assign(this.#progress, { size: entry.size, parts: entry.parts.length });
    // A batch that listed the directory as it started knows it is one.
    if (options.shared?.present === undefined) checkDestDir(options.destDir);
    const finalPath = join(options.destDir, entry.name);
    const pool = options.shared?.pool ?? new PeerPool({
      ...this.#connectOptions,
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
      signal: options.signal,
    });
    const reader = () =>
      this.#reader ??= new PartReader({
        pool,
        addressOf: addressResolver(info),
        limiter: options.shared
          ? options.shared.limiter
          : options.limitRateBytesPerSecond
          ? new RateLimiter(options.limitRateBytesPerSecond)
          : undefined,
        cooldown: options.shared?.cooldown,
        signal: options.signal,
        tls: options.tls,
        sha256Only: options.verify,
        counters: this.#progress,
        onEvent: (event) => this.#emit(event),
      });
    try {
      if (isSmallFile(entry)) {
        this.#progress.phase = "fetching";
        const fetched = await fetchSmallFile({
          entry,
          finalPath,
          destDir: options.destDir,
          reader,
          hashes,
          present: options.shared?.present,
          received: options.shared?.received,
          fsync: options.fsync === true,
          onVerified: (ahead) => {
            // Bytes received ahead were not counted by this fetch's reader.
            if (ahead) this.#progress.bytesReceived += entry.size;
            this.#countFetched(entry, 0);
          },
        });
        if (fetched) {
          this.#progress.phase = "done";
          return { ...this.progress, path: finalPath };
        }
      }
      // One fetch at a time per destination file: a second one waits, then
      // finds the file complete (or resumes what the first left).
      const release = await lockUnlessDone(helperPath(finalPath, LOCK_SUFFIX), {
        signal: options.signal,
        onWaiting: () => this.#emit({ type: "waiting", path: finalPath }),
      }, this.#wholeCheck(entry, finalPath, hashes));
      if (!release) return { ...this.progress, phase: "done", path: finalPath };
      try {
        for (let attempt = 1;; attempt++) {
          const result = await this.#fetchInto(entry, finalPath, hashes, reader(), pool);
          if (result) return result;
          if (attempt >= MAX_LOCK_ATTEMPTS) {
            throw new FetchError(
              `${
                helperPath(finalPath, PARTIAL_SUFFIX)
              } changed under us ${attempt} times; is another program writing it?`,
              [],
            );
          }
        }
      } finally {
        await release();
      }
    } catch (error) {
      throw await explainChange(entry, error, options.servers, this.#connectOptions, finalPath);
    } finally {
      if (!options.shared) pool.closeAll();
    }
  }

  #countFetched(entry: FileEntry, index: number): void {
    this.#progress.partsFetched++;
    this.#progress.bytesFetched += entry.parts[index]!.size;
  }

  /** What holdsWholeFile() needs to tell whether `finalPath` is this file, whole and right. */
  #wholeCheck(entry: FileEntry, finalPath: string, hashes: HashPool) {
    return {
      entry,
      finalPath,
      hashes,
      verify: this.#options.verify === true,
      counters: this.#progress,
    };
  }

  async #fetchInto(
    entry: FileEntry,
    finalPath: string,
    hashes: HashPool,
    reader: PartReader,
    pool: PeerPool,
  ): Promise<FetchResult | undefined> {
    const partialPath = helperPath(finalPath, PARTIAL_SUFFIX);
    const final = lstatOrUndefined(finalPath);
    if (final && !final.isFile && !final.isSymlink) {
      throw new FetchError(`Destination ${finalPath} exists and is not a regular file`, []);
    }
    const partial = ownPartial(partialPath, lstatOrUndefined(partialPath));
    const statePath = helperPath(finalPath, STATE_SUFFIX);
    const stateInfo = lstatOrUndefined(statePath);
    refuseOddHelpers([[partialPath, partial], [statePath, stateInfo]]);
    // Work in the partial file of an earlier run, else in place on an existing
    // destination that is (a copy of) this file, its bytes being what resume
    // is for, else in a new partial file. Never in place through a link: the
    // bytes would land in the file it points to (or shares with another name);
    // a fetch into the partial file ends by renaming it over the link instead.
    const state = stateInfo ? await loadFetchState(statePath) : undefined;
    const local = localCheck(entry, this.#options.verify === true);
    this.#progress.localDigest = local.algorithm;
    const check = new DestinationCheck({ entry, hashes, local, counters: this.#progress });
    const sampled = new Set<number>();
    const sameFile = async () =>
      final?.isFile === true && final.nlink === 1 &&
      await check.isSameFile(finalPath, state, sampled);
    // A partial file no control file speaks for (its fetch was killed in its
    // first second) gives way to a copy of this file at NAME, checked in place
    // rather than fetched again.
    let workPath = !partial
      ? (await sameFile() ? finalPath : partialPath)
      : !stateInfo && await sameFile() && dropLeftoverPartial(partialPath)
      ? finalPath
      : partialPath;

    let file: Deno.FsFile;
    try {
      // A new partial file is created exclusively: a link planted since the
      // check above makes the open fail rather than create the link's target.
      file = Deno.openSync(
        workPath,
        workPath === partialPath && !partial
          ? { read: true, write: true, createNew: true }
          : { read: true, write: true },
      );
    } catch (cause) {
      // A short fetch (fetch_small.ts) made it since the check, or renamed
      // the partial file it made into place: look again.
      if (cause instanceof Deno.errors.AlreadyExists && !partial) return undefined;
      if (cause instanceof Deno.errors.NotFound && partial) return undefined;
      // A copy of this file we may not write (not root): whole and right, it is done.
      const done = workPath === finalPath && isUnwritable(cause) &&
        await holdsWholeFile(this.#wholeCheck(entry, finalPath, hashes));
      if (done) return { ...this.progress, phase: "done", path: finalPath };
      // A copy of this file we may not write (mode 444): fetched beside it and
      // renamed over it, as another file of that name is, when the directory lets us.
      try {
        if (workPath !== finalPath || !(cause instanceof Deno.errors.PermissionDenied)) throw cause;
        file = Deno.openSync(partialPath, { read: true, write: true, createNew: true });
        workPath = partialPath;
      } catch {
        const why = (cause as Error).message;
        throw new FetchError(`Cannot open ${workPath} for writing: ${why}`, [], { cause });
      }
    }
    if (workPath === partialPath && partial && !holdsPartial(file, partialPath)) {
      // A short fetch is filling it: once it is done with it, look again.
      try {
        await waitForLock(file, this.#options.signal, () => {
          this.#emit({ type: "waiting", path: finalPath });
        });
      } finally {
        file.close();
      }
      return undefined;
    }
    try {
      return await this.#fetchIntoWork({
        entry,
        finalPath,
        workPath,
        file,
        statePath,
        state: this.#options.verify ? undefined : state,
        check,
        sampled: workPath === finalPath ? sampled : new Set(),
        hashes,
        reader,
        pool,
        fresh: partial === undefined && workPath === partialPath && state === undefined,
      });
    } finally {
      try {
        file.close();
      } catch {
        // Closed on success already.
      }
    }
  }

  async #fetchIntoWork(work: _Work): Promise<FetchResult> {
    const { entry, hashes } = work;
    // Step 2: what is already there.
    this.#progress.phase = "checking";
    const bootId = await currentBootId();
    const verified = new Bitmap(entry.parts.length);
    const plan = work.check.plan({
      work: work.file,
      workPath: work.workPath,
      state: work.state,
      bootId,
      verified,
      known: work.sampled,
    });
    this.#emit({
      type: "checking",
      workPath: work.workPath,
      usingControlFile: plan.usingControlFile,
    });
    // The parts the destination holds whole are hashed while the parts it
    // lacks are fetched; each one that fails joins the queue at once.
    const background = this.#checkInBackground(work, plan, verified);
    const saver = new ControlFileSaver({
      path: work.statePath,
      work: work.file,
      workPath: work.workPath,
      entry,
      verified,
      bootId,
    });
    const { size: workSize } = work.file.statSync();
    if (workSize < entry.size) work.file.truncateSync(entry.size);

    // Steps 3-5: the missing parts, several at once, with failover.
    const checking = new Set(plan.whole);
    const missing: number[] = [];
    for (let i = 0; i < entry.parts.length; i++) {
      if (!verified.has(i) && !checking.has(i)) missing.push(i);
    }
    // Received parts read back for SHA-256 (FilePartSink): its code loads while they arrive.
    const large = entry.parts.some((part) => part.size > HASH_HERE_MAX_BYTES);
    const sha256 = this.#options.verify || entry.parts.some((part) => part.xxh128 === undefined);
    if (large && ((sha256 && missing.length > 0) || plan.resumeAt.size > 0)) hashes.load("sha256");
    saver.start(STATE_SAVE_INTERVAL_MS);
    const checkDone = () => {
      this.#progress.phase = "fetching";
      // Record what an existing destination already holds, in case we stop.
      if (this.#progress.partsPresent > 0 && work.workPath === work.finalPath) saver.markDirty();
    };
    void background.done.then((complete) => {
      saver.checkComplete = complete;
      checkDone();
    }, checkDone);
    if (plan.whole.length === 0) this.#progress.phase = "fetching";
    let failure: unknown;
    try {
      await this.#fetchMissing(work, missing, plan, background, (index) => {
        verified.set(index);
        saver.markDirty();
      });
      assertAllVerified(entry, verified);
    } catch (error) {
      failure = error;
    } finally {
      const stopped = saver.stop();
      await background.done.catch(() => {});
      await stopped;
    }
    if (failure !== undefined) {
      if (work.fresh && verified.count() === 0) {
        for (const path of [work.workPath, work.statePath]) removeQuietly(path);
      } else {
        if (work.workPath === work.finalPath) unstretch(work.file, work.entry, workSize, verified);
        await saver.save().catch(() => {});
      }
      throw failure;
    }
    return await this.#putInPlace(work, workSize);
  }

  /** Starts hashing the parts the destination holds whole; a fetch that stops stops it too. */
  #checkInBackground(work: _Work, plan: DestinationPlan, verified: Bitmap): _BackgroundCheck {
    const signal = this.#options.signal;
    const rejected = new RejectedParts(() => work.hashes.load("sha256"));
    // A fetch that stops (a part that cannot be fetched, Ctrl-C) stops the
    // check too, instead of reading the rest of the file first.
    const stopCheck = new AbortController();
    const stop = () => stopCheck.abort();
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop, { once: true });
    const done = work.check.checkWholeParts({
      workPath: work.workPath,
      indexes: plan.whole,
      verified,
      rejected,
      stop: stopCheck.signal,
    }).finally(() => signal?.removeEventListener("abort", stop));
    return { done, rejected, stop };
  }

  /** Steps 3-5: fetches the parts missing, and those the check rejects. */
  async #fetchMissing(
    work: _Work,
    missing: number[],
    plan: DestinationPlan,
    background: _BackgroundCheck,
    onVerified: (index: number) => void,
  ): Promise<void> {
    const options = this.#options;
    try {
      await fetchParts({
        entry: work.entry,
        reader: work.reader,
        workPath: work.workPath,
        destDir: options.destDir,
        hashes: work.hashes,
        quickCheck: !options.verify,
        parallel: options.parallel,
        missing,
        later: { most: plan.whole.length, rejected: background.rejected },
        resumeAt: plan.resumeAt,
        signal: options.signal,
        onVerified: (index) => {
          onVerified(index);
          this.#countFetched(work.entry, index);
        },
        onStopping: background.stop,
      });
    } finally {
      if (!options.shared) work.pool.closeAll();
    }
    // Stopped: the check may have ended early, so parts are unverified.
    options.signal?.throwIfAborted();
  }

  /** Step 6: every part verified; put the file in place. */
  async #putInPlace(work: _Work, workSize: number): Promise<FetchResult> {
    const options = this.#options;
    if (workSize > work.entry.size) work.file.truncateSync(work.entry.size);
    if (options.fsync) await work.file.sync();
    work.file.close();
    if (work.workPath !== work.finalPath) Deno.renameSync(work.workPath, work.finalPath);
    removeQuietly(work.statePath);
    if (options.fsync) await syncDir(options.destDir);
    this.#progress.phase = "done";
    return { ...this.progress, path: work.finalPath };
  }
}
