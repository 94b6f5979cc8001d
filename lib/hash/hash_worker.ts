/// <reference lib="deno.worker" />
/**
 * A hash pool worker (see hash_pool.ts): digests of ranges of local files,
 * read here with synchronous reads, so requests are served one at a time in
 * the order they were posted. Each hash is loaded on first use: a fetch that
 * only checks a destination never loads SHA-256 (libcrypto, or node:crypto
 * where it is missing: about 50 ms a worker).
 */
import type { HashAlgorithm, HashReply, HashRequest } from "./hash_pool.ts";
import type { Xxh128 } from "./xxh128.ts";
import { type Sha256, sha256Hasher, updateFromFileSync } from "./sha256.ts";

/**
 * Bytes read from the file at a time: small enough to stay in the core's
 * cache between the read and the hash (measured: less system time than 1 MiB).
 */
const READ_CHUNK_BYTES = 256 * 1024;

const buffer = new Uint8Array(READ_CHUNK_BYTES);

/** One for all ranges: each instance has its own memory, which a new one per range would waste. */
let xxh128: Xxh128 | undefined;

async function load(algorithm: HashAlgorithm): Promise<void> {
  if (algorithm === "sha256") {
    // The first hasher loads libcrypto (or node:crypto); later ones cost nothing.
    await sha256Hasher();
  } else {
    if (xxh128) return;
    const { Xxh128 } = await import("./xxh128.ts");
    xxh128 ??= new Xxh128();
  }
}

/** Hashes `length` bytes of the file from its current position; returns digest and bytes read. */
function hashRange(
  file: Deno.FsFile,
  sha256: Sha256 | undefined,
  algorithm: HashAlgorithm,
  length: number,
): { digest: string; bytes: number } {
  if (algorithm === "xxh128") {
    // Read straight into the module's memory.
    const hash = xxh128!.reset();
    const bytes = hash.updateFromFileSync(file, length);
    return { digest: hash.digest(), bytes };
  }
  const bytes = updateFromFileSync(sha256!, file, length, buffer);
  return { digest: sha256!.digest("hex"), bytes };
}

// Requests are chained, so they are answered in order even while a hash loads.
let queue: Promise<void> = Promise.resolve();

self.onmessage = (event: MessageEvent<HashRequest>) => {
  const request = event.data;
  queue = queue.then(async () => {
    if ("load" in request) {
      // A failure here shows again, as a reply, when a range needs the hash.
      await load(request.load).catch(() => {});
      return;
    }
    const { job, range } = request;
    const algorithm = range.algorithm ?? "sha256";
    try {
      await load(algorithm);
    } catch (error) {
      self.postMessage(
        {
          job,
          error: `Cannot load ${algorithm}: ${error instanceof Error ? error.message : error}`,
          unavailable: true,
        } satisfies HashReply,
      );
      return;
    }
    const sha256 = algorithm === "sha256" ? await sha256Hasher() : undefined;
    let reply: HashReply;
    try {
      const file = Deno.openSync(range.path, { read: true });
      try {
        file.seekSync(range.start, Deno.SeekMode.Start);
        reply = { job, ...hashRange(file, sha256, algorithm, range.length) };
      } finally {
        file.close();
      }
    } catch (error) {
      reply = {
        job,
        error: `Cannot read ${range.path}: ${error instanceof Error ? error.message : error}`,
      };
    }
    self.postMessage(reply);
  });
};
