/**
 * What a fetch's destination already holds, part by part:
 *
 * 1. Whether an existing file of that name is (a copy of) this file at all
 *    (isSameFile), so a fetch never writes into another file.
 * 2. Which parts to trust without reading them (a control file of an earlier
 *    run into this very file, unchanged since), which are whole on disk and
 *    must be hashed, and where the file ends inside a part (resumed from
 *    there).
 * 3. Hashing the whole parts in worker threads, one per core, while the
 *    fetch pulls the parts that are missing; each part found wrong is handed
 *    to the fetch at once (RejectedParts).
 *
 * Local bytes are checked with each part's XXH3-128 when the entry has them
 * all, else (or with --verify) with SHA-256; see localCheck().
 */
import { basename } from "../base/paths.ts";
import { lstatOrUndefined } from "../base/fs_util.ts";
import {
  DEFAULT_HASH_WORKERS,
  type HashAlgorithm,
  type HashPool,
  HashUnavailableError,
} from "../hash/hash_pool.ts";
import { Xxh128, xxh128Backend } from "../hash/xxh128.ts";
import { deadline } from "../base/deadline.ts";
import { FetchError } from "./fetch_error.ts";
import type { FileEntry } from "../state/manifest.ts";
import { type Bitmap, type FetchState, stampMatches, stateSurvived } from "./fetch_state.ts";

/**
 * Telling an existing file apart: when one of its first, middle and last whole
 * parts is wrong, this many more are hashed, and it counts as a copy of the
 * file (worked on in place) if at least this share of them all is right.
 */
export const SAME_FILE_EXTRA_SAMPLES = 5;
/** Bytes read at a time when a sampled part is checked for being a hole. */
const HOLE_READ_BYTES = 1024 * 1024;
export const SAME_FILE_MIN_SHARE = 0.75;

/**
 * How the bytes a destination already holds are checked: with each part's
 * XXH3-128 when the entry has them all (a fraction of SHA-256's cost, see
 * xxh128.ts), else, or with --verify, with its SHA-256. Bytes received are
 * checked the same way (PartReader, FilePartSink).
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

/**
 * Hash workers for a fetch whose destination holds bytes to check: one per
 * core, less the main thread's share where it hashes too (XXH3-128 from
 * libxxhash, see checkWholeParts()). On 2 cores that is one worker: creating
 * the second held the main thread 13-45 ms, and its start came after most of
 * a 1 GiB check had been done.
 */
export function checkHashWorkers(local: LocalCheck): number {
  const here = local.algorithm === "xxh128" && xxh128Backend() === "native";
  return Math.max(1, DEFAULT_HASH_WORKERS - (here ? 1 : 0));
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

/** What the check counts (fetch's progress is one such object). */
export interface DestinationCounters {
  /** Bytes and parts found already correct at the destination. */
  bytesPresent: number;
  partsPresent: number;
  /** Bytes hashed while checking the destination. */
  bytesChecked: number;
  /** The digest the destination's bytes are checked with. */
  localDigest: HashAlgorithm;
}

export interface DestinationCheckOptions {
  entry: FileEntry;
  hashes: HashPool;
  local: LocalCheck;
  /** Updated in place. */
  counters: DestinationCounters;
}

/** What the destination holds, before any part is hashed (see plan()). */
export interface DestinationPlan {
  /** Whether the control file was trusted. */
  usingControlFile: boolean;
  /** Parts whole on disk that must be hashed before they count. */
  whole: number[];
  /** Parts the destination holds a first piece of: how many bytes. */
  resumeAt: Map<number, number>;
}

export class DestinationCheck {
  readonly #entry: FileEntry;
  readonly #hashes: HashPool;
  readonly #local: LocalCheck;
  readonly #counters: DestinationCounters;
  /** The hasher of #partIsRightHere(), made on first use. */
  #hereHasher: Xxh128 | undefined;

  constructor(options: DestinationCheckOptions) {
    this.#entry = options.entry;
    this.#hashes = options.hashes;
    this.#local = options.local;
    this.#counters = options.counters;
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
  async isSameFile(
    path: string,
    state: FetchState | undefined,
    /** Gets the indexes of the parts that hashed right. */
    sampled: Set<number>,
  ): Promise<boolean> {
    const entry = this.#entry;
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
    // Each round's samples are hashed at once, on all workers, or here. A
    // wrong part that is all zero bytes is a hole, not evidence: a fetch into
    // this file stretches it to full size before its parts arrive, and one
    // killed (or out of disk space) before its control file caught up leaves
    // holes where the middle and last parts go. Counted as wrong, they made
    // the next run take the file for another and fetch it all again beside it.
    let holes = 0;
    const rightOf = (indexes: number[]) =>
      Promise.all(indexes.map(async (index) => {
        const right = this.#partIsRightHere(index, path) ?? await this.partIsRight(index, path);
        if (!right) {
          if (this.#isHole(index, path)) holes++;
          return 0;
        }
        sampled.add(index);
        return 1;
      })).then((results) => results.reduce<number>((sum, one) => sum + one, 0));
    let right = await rightOf(first);
    if (right > 0 && right === first.length - holes) return true;
    right += await rightOf(more);
    return right > 0 && right >= SAME_FILE_MIN_SHARE * (first.length + more.length - holes);
  }

  /** Whether part `index` of the file at `path` reads as zero bytes only. */
  #isHole(index: number, path: string): boolean {
    const start = index * this.#entry.partSize;
    const length = this.#entry.parts[index]!.size;
    const file = Deno.openSync(path, { read: true });
    try {
      file.seekSync(start, Deno.SeekMode.Start);
      const buffer = new Uint8Array(Math.min(length, HOLE_READ_BYTES));
      const words = new BigUint64Array(buffer.buffer, 0, buffer.length >> 3);
      for (let done = 0; done < length;) {
        const n = file.readSync(buffer.subarray(0, Math.min(buffer.length, length - done)));
        if (n === null || n === 0) return false;
        // Eight bytes at a time, then the tail.
        for (let i = 0; i < n >> 3; i++) if (words[i] !== 0n) return false;
        for (let i = n & ~7; i < n; i++) if (buffer[i] !== 0) return false;
        done += n;
      }
      return true;
    } finally {
      file.close();
    }
  }

  /** Whether parts can be hashed on this thread (see #partIsRightHere()). */
  #hashesHere(): boolean {
    return this.#local.algorithm === "xxh128" && xxh128Backend() === "native";
  }

  /**
   * Whether the file at `path` holds part `index` whole and right, hashed on
   * this thread: undefined unless the local check uses XXH3-128 and the
   * system's libxxhash serves it (an 8 MiB part then takes 1-3 ms). A fetch
   * into an existing file writes nothing until its samples hashed right, and
   * they no longer wait for a hash worker to start (about 45 ms each here);
   * the main thread also takes parts of the whole check (checkWholeParts()).
   */
  #partIsRightHere(index: number, path: string): boolean | undefined {
    if (!this.#hashesHere()) return undefined;
    const part = this.#entry.parts[index]!;
    const file = Deno.openSync(path, { read: true });
    try {
      file.seekSync(index * this.#entry.partSize, Deno.SeekMode.Start);
      const hash = this.#hereHasher ??= new Xxh128();
      const bytes = hash.reset().updateFromFileSync(file, part.size);
      this.#counters.bytesChecked += bytes;
      return bytes === part.size && hash.digest() === part.xxh128;
    } finally {
      file.close();
    }
  }

  /**
   * Whether the file at `path` holds part `index` whole and right, by the
   * local check's digest. A worker that cannot load XXH3-128 (no libxxhash
   * and no WebAssembly, say) reads nothing; then this part and every later
   * one are checked with SHA-256, rather than all counting as damaged.
   */
  async partIsRight(index: number, path: string): Promise<boolean> {
    const entry = this.#entry;
    const local = this.#local;
    const part = entry.parts[index]!;
    const hash = (algorithm: HashAlgorithm) =>
      this.#hashes.hashRange({
        path,
        start: index * entry.partSize,
        length: part.size,
        algorithm,
      });
    let algorithm = local.algorithm;
    let result: { digest: string; bytes: number };
    try {
      result = await hash(algorithm);
    } catch (error) {
      if (!(error instanceof HashUnavailableError) || algorithm === "sha256") throw error;
      if (local.algorithm !== "sha256") {
        Object.assign(local, localCheck(entry, true));
        this.#counters.localDigest = local.algorithm;
      }
      algorithm = "sha256";
      result = await hash(algorithm);
    }
    this.#counters.bytesChecked += result.bytes;
    // Compared with the digest of the algorithm used, whatever `local` says by now.
    const expected = algorithm === "sha256" ? part.digest : part.xxh128;
    return result.bytes === part.size && result.digest === expected;
  }

  /**
   * Sorts the parts by what the work file holds: those a usable control file
   * vouches for (or that were hashed right while telling the file apart) go
   * into `verified`; the plan lists the others it holds whole, and where it
   * ends inside a part.
   */
  plan(options: {
    work: Deno.FsFile;
    workPath: string;
    /** The control file, unless --verify says to ignore it. */
    state: FetchState | undefined;
    bootId: string | undefined;
    verified: Bitmap;
    /** Whole parts already hashed right (while telling whether the file is this one). */
    known: ReadonlySet<number>;
  }): DestinationPlan {
    const { work, workPath, state, bootId, verified, known } = options;
    const entry = this.#entry;
    const info = work.statSync();
    const onDisk = info.size;
    const usable = state !== undefined && state.contentId === entry.contentId &&
      state.workFile === basename(workPath) && state.verified.size === entry.parts.length &&
      stateSurvived(state, bootId) && stampMatches(state, info);
    const whole: number[] = [];
    const resumeAt = new Map<number, number>();
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
      if (verified.has(index)) this.#present(index);
    }
    return { usingControlFile: usable, whole, resumeAt };
  }

  /**
   * Hashes the parts the destination holds whole in worker threads, one per
   * core, each reading the file itself: the check runs at the speed of all
   * cores instead of one. True when every part was checked (not stopped).
   */
  async checkWholeParts(options: {
    workPath: string;
    indexes: readonly number[];
    verified: Bitmap;
    /** Each part that is not right (or could not be read), as soon as that is known. */
    rejected: RejectedParts;
    /** Aborted when the fetch stops: no new part is read (those being read finish). */
    stop: AbortSignal;
  }): Promise<boolean> {
    const { workPath, verified, rejected, stop } = options;
    const queue = [...options.indexes];
    const next = () => (stop.aborted ? undefined : queue.shift());
    try {
      const lane = (isRight: (index: number) => Promise<boolean>) => async () => {
        for (let index = next(); index !== undefined; index = next()) {
          let right = false;
          try {
            right = await isRight(index);
          } catch {
            // Fetched again, like a damaged part.
          }
          if (right) {
            verified.set(index);
            this.#present(index);
          } else {
            rejected.add(index);
          }
        }
      };
      // Two ranges per worker in flight, so none waits for its next one; and
      // the main thread takes parts too, one at a time between turns of its
      // event loop, from the start (the workers take ~45 ms to start).
      const lanes = Array.from(
        { length: 2 * this.#hashes.size },
        () => lane((index) => this.partIsRight(index, workPath)),
      );
      if (this.#hashesHere()) {
        lanes.push(lane(async (index) => {
          await new Promise<void>((resolve) => deadline(0, resolve));
          return this.#partIsRightHere(index, workPath) ?? await this.partIsRight(index, workPath);
        }));
      }
      await Promise.all(lanes.map((run) => run()));
      return queue.length === 0;
    } finally {
      rejected.end();
    }
  }

  #present(index: number): void {
    this.#counters.partsPresent++;
    this.#counters.bytesPresent += this.#entry.parts[index]!.size;
  }
}

/**
 * Makes sure `destDir` is a directory: one that does not exist yet is made
 * (with its parents, as wget -P and aria2c -d do); throws a FetchError when
 * it is something else or cannot be made.
 */
export function checkDestDir(destDir: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(destDir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new FetchError(
        `Cannot use the destination ${destDir}: ${(error as Error).message}`,
        [],
        {
          cause: error,
        },
      );
    }
    // A symbolic link to nothing: say so, not "File exists" from the mkdir below.
    const link = lstatOrUndefined(destDir);
    if (link?.isSymlink) {
      throw new FetchError(
        `Destination ${destDir} is a symbolic link to nothing (${Deno.readLinkSync(destDir)}): ` +
          `make its target directory, or name another`,
        [],
      );
    }
    try {
      Deno.mkdirSync(destDir, { recursive: true });
      return;
    } catch (cause) {
      throw new FetchError(
        `Cannot create the destination directory ${destDir}: ${(cause as Error).message}`,
        [],
        { cause },
      );
    }
  }
  if (!info.isDirectory) throw new FetchError(`Destination ${destDir} is not a directory`, []);
}
