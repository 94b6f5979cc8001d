/**
 * The replay guard: every signed request's nonce may be used once. Instances on
 * a host share the data directory, so the used nonces live there, one empty
 * file each, created exclusively: a request replayed to another instance is
 * refused too. Files are grouped in buckets of SIGNATURE_MAX_AGE_MS by
 * timestamp; a bucket whose every timestamp is too old to pass the freshness
 * check any more is deleted whole.
 */
import { dataPaths } from "../state/config.ts";
import { ProtocolError } from "../wire/errors.ts";
import { syncDir } from "../base/fs_util.ts";
import { dirname, join } from "../base/paths.ts";
import { type SignedAuth } from "../wire/protocol.ts";
import { sha256Hex } from "../hash/sha256.ts";
import { SIGNATURE_MAX_AGE_MS } from "./signed_request.ts";

/** How often one process looks for expired nonce buckets to delete. */
export const NONCE_PRUNE_INTERVAL_MS = 60_000;

const _lastPrune = new Map<string, number>();

function _bucketOf(timestamp: number): number {
  return Math.floor(timestamp / SIGNATURE_MAX_AGE_MS);
}

/**
 * Records the nonce of a request whose signature already checked out; throws
 * UNAUTHORIZED when it was used before. Call only after the freshness check, so
 * every nonce still on record is younger than its bucket's expiry.
 */
export async function claimNonce(dir: string, auth: SignedAuth, now = Date.now()): Promise<void> {
  const root = dataPaths(dir).noncesDir;
  const bucketDir = join(root, String(_bucketOf(auth.timestamp)));
  // Keyed by signer and nonce, hashed: no name from the network becomes a path.
  const name = await sha256Hex(`${auth.key}\n${auth.nonce}`);
  await Deno.mkdir(bucketDir, { recursive: true });
  try {
    const file = await Deno.open(join(bucketDir, name), { write: true, createNew: true });
    file.close();
    // On disk before the request takes effect: a nonce forgotten in a power
    // loss would let the same request be replayed while it is still fresh.
    // The directories above it too: another instance may have just created
    // them and not flushed them yet (signed requests are few; this is cheap).
    await syncDir(bucketDir);
    await syncDir(root);
    await syncDir(dirname(root));
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new ProtocolError(
        "UNAUTHORIZED",
        "Signed request was already used (replay refused); sign a new one",
      );
    }
    throw error;
  }
  if (now - (_lastPrune.get(root) ?? 0) >= NONCE_PRUNE_INTERVAL_MS) {
    _lastPrune.set(root, now);
    await pruneNonces(dir, now);
  }
}

/** Deletes nonce buckets that no fresh request can fall into; returns how many. */
export async function pruneNonces(dir: string, now = Date.now()): Promise<number> {
  const root = dataPaths(dir).noncesDir;
  // A fresh request has timestamp >= now - SIGNATURE_MAX_AGE_MS.
  const oldestLive = _bucketOf(now - SIGNATURE_MAX_AGE_MS);
  let removed = 0;
  try {
    for await (const entry of Deno.readDir(root)) {
      const bucket = Number(entry.name);
      if (!entry.isDirectory || !/^\d+$/.test(entry.name) || bucket >= oldestLive) continue;
      await Deno.remove(join(root, entry.name), { recursive: true }).catch(() => {});
      removed++;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return removed;
}
