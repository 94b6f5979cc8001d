/**
 * Digests of local file ranges in worker threads, one per core, each reading
 * the file itself (nothing is copied between threads). A fetch verifies every
 * part this way: each received part once it is written (SHA-256), and the
 * parts a destination already holds (XXH3-128 when the manifest has it, see
 * xxh128.ts). SHA-256 costs about 0.6 s of CPU per GiB here; done on the main
 * thread while bytes arrive it was the fetch's bottleneck (1 GiB: 1.6 s,
 * against 0.8 s with no hashing at all), in workers it runs on the other core
 * while the main thread only moves bytes.
 */

/** At most this many hashing workers, whatever the core count. */
export const MAX_HASH_WORKERS = 4;

const _CORES = navigator.hardwareConcurrency || 2;

/** One worker per core (up to MAX_HASH_WORKERS): for reading and hashing files already on disk. */
export const DEFAULT_HASH_WORKERS = Math.max(1, Math.min(_CORES, MAX_HASH_WORKERS));

/**
 * One worker per two cores: enough when only bytes received are hashed. A
 * worker hashes SHA-256 at about 1.8 GB/s, more than the other cores receive
 * and write; each worker more is an isolate to start and feed. On 2 cores a
 * fetch into an empty directory took 6 % less time (and 13 MB less memory)
 * with 1 worker than with 2 (8 of 8 interleaved 1 GiB runs).
 */
export const RECEIVE_HASH_WORKERS = Math.max(1, Math.min(Math.floor(_CORES / 2), MAX_HASH_WORKERS));

/** The digests a worker computes: a part's `digest` and its `xxh128` (manifest.ts). */
export type HashAlgorithm = "sha256" | "xxh128";

/** A file range to hash: `length` bytes of `path` from byte `start`. */
export interface FileRange {
  path: string;
  start: number;
  length: number;
  /** Default "sha256". */
  algorithm?: HashAlgorithm;
}

/** Main thread to worker: a range to hash, or a hash to load before ranges need it. */
export type HashRequest = { job: number; range: FileRange } | { load: HashAlgorithm };

/**
 * Worker to main thread: the digest and the bytes read (fewer at end of file),
 * or an error; `unavailable` when the hash itself could not be loaded.
 */
export type HashReply =
  | { job: number; digest: string; bytes: number }
  | { job: number; error: string; unavailable?: true };

/** A worker could not load the hash a range asked for (the range was not read). */
export class HashUnavailableError extends Error {
  override name = "HashUnavailableError";
}

interface _Pending {
  worker: number;
  resolve: (result: { digest: string; bytes: number }) => void;
  reject: (error: Error) => void;
}

export class HashPool {
  readonly size: number;
  readonly #workers: Worker[] = [];
  /** Ranges each worker has queued: new ones go to the least busy. */
  readonly #queued: number[] = [];
  readonly #pending = new Map<number, _Pending>();
  /** Workers that failed: a worker with an uncaught error never answers again. */
  readonly #dead = new Set<number>();
  #lastFailure: Error | undefined;
  #nextJob = 1;
  #closed = false;

  readonly #module: URL;
  #started = false;

  /**
   * `module` is the worker's code (tests pass one that fails). The workers
   * start on first use: creating one holds the calling thread 13-45 ms here,
   * which a fetch of small parts (hashed on its main thread) never needs.
   */
  constructor(
    options: { workers?: number; module?: URL } = {},
  ) {
    this.size = Math.max(1, Math.min(options.workers ?? DEFAULT_HASH_WORKERS, MAX_HASH_WORKERS));
    this.#module = options.module ?? new URL("./hash_worker.ts", import.meta.url);
  }

  #start(): void {
    if (this.#started) return;
    this.#started = true;
    try {
      for (let i = 0; i < this.size; i++) {
        const worker = new Worker(this.#module.href, { type: "module" });
        worker.onmessage = (event: MessageEvent<HashReply>) => this.#onReply(event.data);
        worker.onerror = (event) => {
          // Handled here: an error in a worker must not take the process down.
          event.preventDefault();
          this.#failWorker(i, new Error(`A hash worker failed: ${event.message}`));
        };
        this.#workers.push(worker);
        this.#queued.push(0);
      }
    } catch (error) {
      // No worker can serve: every range asked for fails with this.
      this.#lastFailure = new Error(`Cannot start a hash worker: ${(error as Error).message}`, {
        cause: error,
      });
      for (let i = 0; i < this.size; i++) this.#dead.add(i);
      for (const worker of this.#workers) worker.terminate();
    }
  }

  /**
   * Has every worker load a hash now (each loads one on first use otherwise):
   * node:crypto takes a worker about 50 ms, better spent while bytes are
   * still on their way.
   */
  load(algorithm: HashAlgorithm): void {
    if (this.#closed) return;
    this.#start();
    for (const [i, worker] of this.#workers.entries()) {
      if (!this.#dead.has(i)) worker.postMessage({ load: algorithm } satisfies HashRequest);
    }
  }

  /** The digest of a file range, read and hashed by a worker; `bytes` is less at end of file. */
  hashRange(range: FileRange): Promise<{ digest: string; bytes: number }> {
    if (this.#closed) return Promise.reject(new Error("The hash pool is closed"));
    this.#start();
    let worker = -1;
    for (let i = 0; i < this.#queued.length; i++) {
      if (this.#dead.has(i)) continue;
      if (worker === -1 || this.#queued[i]! < this.#queued[worker]!) worker = i;
    }
    if (worker === -1) {
      return Promise.reject(this.#lastFailure ?? new Error("No hash worker is running"));
    }
    const job = this.#nextJob++;
    this.#queued[worker]!++;
    const result = new Promise<{ digest: string; bytes: number }>((resolve, reject) =>
      this.#pending.set(job, { worker, resolve, reject })
    );
    this.#workers[worker]!.postMessage({ job, range } satisfies HashRequest);
    return result;
  }

  /** Ends the workers; pending ranges reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const worker of this.#workers) worker.terminate();
    for (const [job, pending] of this.#pending) {
      this.#pending.delete(job);
      pending.reject(new Error("The hash pool is closed"));
    }
  }

  #onReply(reply: HashReply): void {
    const pending = this.#pending.get(reply.job);
    if (!pending) return;
    this.#pending.delete(reply.job);
    this.#queued[pending.worker]!--;
    if (!("error" in reply)) pending.resolve({ digest: reply.digest, bytes: reply.bytes });
    else if (reply.unavailable) pending.reject(new HashUnavailableError(reply.error));
    else pending.reject(new Error(reply.error));
  }

  #failWorker(worker: number, error: Error): void {
    // Its queued ranges fail now, and no new one goes to it.
    this.#dead.add(worker);
    this.#lastFailure = error;
    this.#workers[worker]?.terminate();
    for (const [job, pending] of this.#pending) {
      if (pending.worker !== worker) continue;
      this.#pending.delete(job);
      pending.reject(error);
    }
  }
}
