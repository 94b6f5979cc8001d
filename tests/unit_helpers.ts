/** Small helpers shared by the in-process unit tests (tests/unit_*.test.ts). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ProtocolError } from "../lib/wire/errors.ts";
import { type PartStore } from "../lib/state/store.ts";

/** Random bytes; getRandomValues fills at most 64 KiB per call. */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}

/** Deterministic bytes from a seed (xorshift32, one byte per step): the same every run. */
export function seededBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export { concatBytes as concat } from "../lib/base/concat_bytes.ts";

/** An assert.throws/rejects validator: a ProtocolError with this code. */
export function assertCode(code: string): (error: unknown) => true {
  return (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

/** Runs `fn` with a fresh temp directory and removes it afterwards. */
export async function withTempDir(
  prefix: string,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Stores bytes as a part through the normal write path; returns its digest. */
export async function storeBytes(store: PartStore, bytes: Uint8Array): Promise<string> {
  const digest = sha256(bytes);
  const writer = await store.beginWrite(digest);
  await writer.write(bytes);
  await writer.commit();
  return digest;
}
