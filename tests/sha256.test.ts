import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  loadNativeSha256,
  sha256FileRangeSync,
  sha256Hasher,
  sha256Hex,
  sha256HexSync,
} from "../lib/hash/sha256.ts";
import { NativeSha256, nativeSha256 } from "../lib/hash/sha256_native.ts";
import { missingTool } from "./missing_tool.ts";
import { newSeed, randomInt, seededRandom } from "./seeded_random.ts";

function nodeSha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

function randomBytes(random: () => number, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => randomInt(random, 0, 255));
}

Deno.test("sha256HexSync() gives the FIPS 180-2 known answers", () => {
  assert.equal(
    sha256HexSync(""),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assert.equal(
    sha256HexSync("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    sha256HexSync("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("sha256HexSync() and sha256Hex() match node:crypto at every padding boundary", async () => {
  const seed = newSeed();
  const random = seededRandom(seed);
  // Every length up to 4 blocks crosses each padding case (55, 56, 63, 64 bytes...).
  const lengths = [...Array.from({ length: 260 }, (_, i) => i), 4095, 4096, 70_001];
  for (const length of lengths) {
    const bytes = randomBytes(random, length);
    const expected = nodeSha256(bytes);
    assert.equal(sha256HexSync(bytes), expected, `seed ${seed}, ${length} bytes`);
    assert.equal(await sha256Hex(bytes), expected, `seed ${seed}, ${length} bytes`);
  }
  const text = "fts-content-v1:5:ünï €𝄞" + "a".repeat(64);
  assert.equal(sha256HexSync(text), nodeSha256(text));
  assert.equal(await sha256Hex(text), nodeSha256(text));
});

Deno.test("sha256Hasher() digests a stream fed in pieces like node:crypto does", async () => {
  const seed = newSeed();
  const random = seededRandom(seed);
  const bytes = randomBytes(random, 300_000);
  const hasher = await sha256Hasher();
  for (let at = 0; at < bytes.length;) {
    const next = Math.min(bytes.length, at + randomInt(random, 0, 70_000));
    hasher.update(bytes.subarray(at, next));
    at = next;
  }
  assert.equal(hasher.digest("hex"), nodeSha256(bytes), `seed ${seed}`);
  // Each call gives a fresh hash.
  assert.equal((await sha256Hasher()).digest("hex"), nodeSha256(""));
});

// Last in this file: after it, sha256HexSync() no longer runs the JavaScript path.
Deno.test("sha256HexSync() after loadNativeSha256() gives the same digests, natively", async () => {
  const text = "fts-content-v1:9:" + "ab".repeat(1000);
  const before = sha256HexSync(text);
  await loadNativeSha256();
  await loadNativeSha256();
  assert.equal(sha256HexSync(text), before);
  assert.equal(sha256HexSync(new TextEncoder().encode(text)), nodeSha256(text));
  assert.equal(sha256HexSync(""), nodeSha256(""));
});

Deno.test({
  name: "sha256: where libcrypto is installed, hashers use it, and its digests match node:crypto",
  ignore: Deno.build.os !== "linux" || missingTool("libcrypto.so.3"),
  fn() {
    const seed = newSeed();
    const random = seededRandom(seed);
    for (const length of [0, 1, 55, 56, 63, 64, 65, 4096, 300_001]) {
      const bytes = randomBytes(random, length);
      const native = nativeSha256();
      assert.ok(native, "libcrypto is installed but nativeSha256() gave nothing");
      // Fed in uneven pieces, as a stream arrives.
      for (let at = 0; at < bytes.length;) {
        const step = randomInt(random, 1, 70_000);
        native.update(bytes.subarray(at, at + step));
        at += step;
      }
      assert.equal(native.digest("hex"), nodeSha256(bytes), `seed ${seed}, ${length} bytes`);
    }
    assert.equal(nativeSha256()!.update("ünï €").digest("hex"), nodeSha256("ünï €"));
  },
});

Deno.test({
  name: "sha256: sha256Hasher() streams through libcrypto where it is installed",
  ignore: Deno.build.os !== "linux" || missingTool("libcrypto.so.3"),
  async fn() {
    const hasher = await sha256Hasher();
    assert.ok(hasher instanceof NativeSha256, `sha256Hasher() gave ${hasher.constructor.name}`);
  },
});

Deno.test({
  name: "sha256: sha256FileRangeSync() hashes a range of an open file, fewer bytes at its end",
  ignore: Deno.build.os !== "linux" || missingTool("libcrypto.so.3"),
  async fn() {
    const random = seededRandom(newSeed());
    const bytes = randomBytes(random, 200_003);
    const path = await Deno.makeTempFile({ prefix: "fts-sha256-range-" });
    try {
      await Deno.writeFile(path, bytes);
      using file = Deno.openSync(path, { read: true });
      assert.deepEqual(sha256FileRangeSync(file, 70_001, 100_000), {
        digest: nodeSha256(bytes.subarray(70_001, 170_001)),
        bytes: 100_000,
      });
      // From `start` wherever the position was left, which is after the bytes read.
      assert.deepEqual(sha256FileRangeSync(file, 150_000, 100_000), {
        digest: nodeSha256(bytes.subarray(150_000)),
        bytes: 50_003,
      });
      assert.equal(file.seekSync(0, Deno.SeekMode.Current), 200_003);
    } finally {
      await Deno.remove(path);
    }
  },
});
