/**
 * Unit tests of the nonce store behind the replay guard: FileNonceStore (the
 * host's directory of used nonces) against the NonceStore contract, and
 * ReplayGuard against an in-memory store, to show the guard needs nothing
 * but the interface.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FileNonceStore } from "../lib/auth/file_nonce_store.ts";
import { type NonceStore } from "../lib/auth/nonce_store.ts";
import { NONCE_PRUNE_INTERVAL_MS, ReplayGuard } from "../lib/auth/replay_guard.ts";
import { SIGNATURE_MAX_AGE_MS } from "../lib/auth/signed_request.ts";
import { ProtocolError } from "../lib/wire/errors.ts";
import { withTempDir } from "./unit_helpers.ts";

const W = SIGNATURE_MAX_AGE_MS;

async function _buckets(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(dir, "nonces"))) names.push(entry.name);
  return names.sort();
}

Deno.test("FileNonceStore.claim() is true once per signer and nonce, false after", async () => {
  await withTempDir("fts-unit-nonce-", async (dir) => {
    const store = new FileNonceStore(dir);
    const expiresAt = Date.now() + W;
    assert.equal(await store.claim("ed25519:a", "n1", expiresAt), true);
    assert.equal(await store.claim("ed25519:a", "n1", expiresAt), false);
    assert.equal(await store.claim("ed25519:b", "n1", expiresAt), true);
    assert.equal(await store.claim("ed25519:a", "n2", expiresAt), true);
    // Another instance of the host (another store object on the same directory) sees the claim.
    assert.equal(await new FileNonceStore(dir).claim("ed25519:a", "n1", expiresAt), false);
  });
});

Deno.test("FileNonceStore.claim() lets exactly one of 8 concurrent claims of a nonce win", async () => {
  await withTempDir("fts-unit-nonce-", async (dir) => {
    const expiresAt = Date.now() + W;
    const results = await Promise.all(
      Array.from({ length: 8 }, () => new FileNonceStore(dir).claim("ed25519:a", "n", expiresAt)),
    );
    assert.equal(results.filter((won) => won).length, 1);
  });
});

Deno.test("FileNonceStore names a bucket floor(timestamp / SIGNATURE_MAX_AGE_MS) of the request", async () => {
  await withTempDir("fts-unit-nonce-", async (dir) => {
    const store = new FileNonceStore(dir);
    const timestamp = 1_764_000_123_456;
    await store.claim("ed25519:a", "n", timestamp + W);
    assert.deepEqual(await _buckets(dir), [String(Math.floor(timestamp / W))]);
  });
});

Deno.test("FileNonceStore.sweep() keeps a bucket until its every claim has expired", async () => {
  await withTempDir("fts-unit-nonce-", async (dir) => {
    const store = new FileNonceStore(dir);
    assert.equal(await store.sweep(Date.now()), 0, "no nonce directory yet");
    const start = 1_764_000_000_000 - (1_764_000_000_000 % W);
    // Two buckets: claims expiring in [start + W, start + 2W) and [start + 2W, start + 3W).
    await store.claim("ed25519:a", "early", start + W);
    await store.claim("ed25519:a", "late", start + 2 * W + 1);
    assert.equal((await _buckets(dir)).length, 2);
    // The last claim of the first bucket expires just before start + 2W.
    assert.equal(await store.sweep(start + 2 * W - 1), 0);
    assert.equal(await store.sweep(start + 2 * W), 1);
    assert.equal((await _buckets(dir)).length, 1);
    assert.equal(await store.claim("ed25519:a", "late", start + 2 * W + 1), false);
    assert.equal(await store.sweep(start + 3 * W), 1);
    assert.deepEqual(await _buckets(dir), []);
  });
});

Deno.test("FileNonceStore rejects a bucket width that is not a positive whole number", () => {
  assert.throws(() => new FileNonceStore("/tmp/x", 0), RangeError);
  assert.throws(() => new FileNonceStore("/tmp/x", 1.5), RangeError);
});

/** A NonceStore in memory, counting sweeps: the guard sees only the interface. */
class _MemoryNonceStore implements NonceStore {
  readonly claims = new Map<string, number>();
  sweeps = 0;
  claim(key: string, nonce: string, expiresAt: number): Promise<boolean> {
    const name = JSON.stringify([key, nonce]);
    if (this.claims.has(name)) return Promise.resolve(false);
    this.claims.set(name, expiresAt);
    return Promise.resolve(true);
  }
  sweep(now: number): Promise<number> {
    this.sweeps++;
    let removed = 0;
    for (const [name, expiresAt] of this.claims) {
      if (expiresAt < now) removed += Number(this.claims.delete(name));
    }
    return Promise.resolve(removed);
  }
}

Deno.test("ReplayGuard.claim() keeps a nonce until the freshness window ends and refuses its replay", async () => {
  const store = new _MemoryNonceStore();
  const guard = new ReplayGuard(store);
  const now = 1_764_000_000_000;
  const auth = { key: "ed25519:k", timestamp: now, nonce: "A".repeat(22), signature: "s" };
  await guard.claim(auth, now);
  assert.deepEqual([...store.claims.values()], [now + W]);
  await assert.rejects(
    guard.claim(auth, now),
    (error) => error instanceof ProtocolError && error.code === "UNAUTHORIZED",
  );
});

Deno.test("ReplayGuard.claim() sweeps its store at most once per NONCE_PRUNE_INTERVAL_MS", async () => {
  const store = new _MemoryNonceStore();
  const guard = new ReplayGuard(store);
  const now = 1_764_000_000_000;
  const auth = { key: "ed25519:k", timestamp: now, nonce: "", signature: "s" };
  await guard.claim({ ...auth, nonce: "a" }, now);
  await guard.claim({ ...auth, nonce: "b" }, now + NONCE_PRUNE_INTERVAL_MS - 1);
  assert.equal(store.sweeps, 1);
  await guard.claim({ ...auth, nonce: "c" }, now + NONCE_PRUNE_INTERVAL_MS);
  assert.equal(store.sweeps, 2);
  // A refused replay does not sweep.
  await assert.rejects(guard.claim({ ...auth, nonce: "c" }, now + 3 * NONCE_PRUNE_INTERVAL_MS));
  assert.equal(store.sweeps, 2);
});
