/**
 * The nonce store of one host: instances on a host share the data directory,
 * so the used nonces live there, one empty file each, created exclusively: a
 * request replayed to another instance is refused too. Files are grouped in
 * buckets by expiry; a bucket whose every claim has expired is deleted whole.
 *
 * Layout: `DIR/nonces/BUCKET/SHA256(key + "\n" + nonce)`. A bucket is named
 * after the start of its claims' lifetime, `floor(expiresAt / bucketMs) - 1`:
 * claims live one bucket width (a signed request's freshness window), so that
 * is `floor(timestamp / SIGNATURE_MAX_AGE_MS)` of the request.
 */
import { dataPaths } from "../state/config.ts";
import { syncDir } from "../base/fs_util.ts";
import { dirname, join } from "../base/paths.ts";
import { sha256Hex } from "../hash/sha256.ts";
import { type NonceStore } from "./nonce_store.ts";
import { SIGNATURE_MAX_AGE_MS } from "./signed_request.ts";

export class FileNonceStore implements NonceStore {
  readonly #root: string;
  readonly #bucketMs: number;

  /** The store of the data directory `dir`; claims are grouped in buckets `bucketMs` wide. */
  constructor(dir: string, bucketMs = SIGNATURE_MAX_AGE_MS) {
    if (!(Number.isSafeInteger(bucketMs) && bucketMs > 0)) {
      throw new RangeError(
        `Nonce bucket width must be a positive whole number of ms, got ${bucketMs}`,
      );
    }
    this.#root = dataPaths(dir).noncesDir;
    this.#bucketMs = bucketMs;
  }

  #bucketOf(expiresAt: number): number {
    return Math.floor(expiresAt / this.#bucketMs) - 1;
  }

  async claim(key: string, nonce: string, expiresAt: number): Promise<boolean> {
    const root = this.#root;
    const bucketDir = join(root, String(this.#bucketOf(expiresAt)));
    // Keyed by signer and nonce, hashed: no name from the network becomes a path.
    const name = await sha256Hex(`${key}\n${nonce}`);
    await Deno.mkdir(bucketDir, { recursive: true });
    try {
      const file = await Deno.open(join(bucketDir, name), { write: true, createNew: true });
      file.close();
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return false;
      throw error;
    }
    // On disk before the request takes effect: a nonce forgotten in a power
    // loss would let the same request be replayed while it is still fresh.
    // The directories above it too: another instance may have just created
    // them and not flushed them yet (signed requests are few; this is cheap).
    await syncDir(bucketDir);
    await syncDir(root);
    await syncDir(dirname(root));
    return true;
  }

  /** Deletes the buckets that hold only claims expired by `now`; returns how many. */
  async sweep(now: number): Promise<number> {
    // A claim expiring at `now` still protects a request at the edge of the window.
    const oldestLive = this.#bucketOf(now);
    let removed = 0;
    try {
      for await (const entry of Deno.readDir(this.#root)) {
        const bucket = Number(entry.name);
        if (!entry.isDirectory || !/^\d+$/.test(entry.name) || bucket >= oldestLive) continue;
        await Deno.remove(join(this.#root, entry.name), { recursive: true }).catch(() => {});
        removed++;
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return removed;
  }
}
