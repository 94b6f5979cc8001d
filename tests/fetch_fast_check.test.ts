/**
 * The fast local check: preload and upload record each part's
 * XXH3-128 beside its SHA-256, and fetch checks the bytes a destination already
 * holds with it; --verify, and entries without it, use SHA-256.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { xxh128Hex } from "../lib/hash/xxh128.ts";
import {
  assertSameFile,
  damageFile,
  editManifestEntry,
  fetchJson,
  forgePart,
  newDest,
  readManifestJson,
  startCluster,
} from "./harness.ts";
import { testUser, whoami } from "./upload_util.ts";

const MiB = 1024 * 1024;
const PART = 256 * 1024;

/** Each part's XXH3-128, from the file's bytes. */
async function _partDigests(path: string, partSize: number): Promise<string[]> {
  const data = await Deno.readFile(path);
  const out: string[] = [];
  for (let at = 0; at < data.length; at += partSize) {
    out.push(xxh128Hex(data.subarray(at, at + partSize)));
  }
  return out;
}

Deno.test("fast check: preload and upload record every part's XXH3-128", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "p.bin": 3 * MiB + 5 },
  });
  try {
    const alice = testUser(cluster, "alice");
    await whoami(cluster, alice);
    const upSource = join(cluster.work, "src", "u.bin");
    await Deno.copyFile(join(cluster.work, "src", "p.bin"), upSource);
    await damageFile(upSource, 5, 10); // other bytes than p.bin's, in part 0
    const up = await cluster.fts(["upload", upSource], { env: alice.env });
    assert.equal(up.code, 0, up.stderr);

    const { files } = await readManifestJson(cluster.dir);
    for (const name of ["p.bin", "u.bin"]) {
      const expected = await _partDigests(join(cluster.work, "src", name), PART);
      const parts = files[name]!.parts as { xxh128?: string }[];
      assert.deepEqual(parts.map((part) => part.xxh128), expected, name);
    }
    assert.notEqual(files["p.bin"]!.parts[0]!.digest, files["u.bin"]!.parts[0]!.digest);

    // An entry an older fts uploaded gets them when its owner uploads the same bytes again
    // (the parts and their replicas stay).
    await editManifestEntry(cluster.dir, "u.bin", (parts) => {
      for (const part of parts) delete part.xxh128;
    });
    const again = await cluster.fts(["upload", upSource, "--replace"], { env: alice.env });
    assert.equal(again.code, 0, again.stderr);
    const after = (await readManifestJson(cluster.dir)).files["u.bin"]!;
    assert.deepEqual(
      (after.parts as { xxh128?: string }[]).map((part) => part.xxh128),
      await _partDigests(upSource, PART),
    );
    assert.deepEqual(
      after.parts.map((p) => p.replicas),
      files["u.bin"]!.parts.map((p) => p.replicas),
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("fast check: a damaged region is found with XXH3-128, and with SHA-256 under --verify or for entries without it", async () => {
  const size = 4 * MiB;
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "d.bin": size } });
  try {
    const source = join(cluster.work, "src", "d.bin");
    const damaged = async () => {
      const dest = await newDest(cluster);
      await Deno.copyFile(source, join(dest, "d.bin"));
      await damageFile(join(dest, "d.bin"), 5 * PART + 100, 1000);
      return dest;
    };
    const fetchDamaged = async (extra: string[] = []) => {
      const dest = await damaged();
      const summary = await fetchJson(cluster, "d.bin", dest, extra);
      await assertSameFile(join(dest, "d.bin"), source);
      assert.equal(summary.partsFetched, 1);
      assert.equal(summary.bytesReceived, PART);
      assert.equal(summary.bytesChecked, size);
      return summary as typeof summary & { localDigest: string };
    };
    assert.equal((await fetchDamaged()).localDigest, "xxh128");
    assert.equal((await fetchDamaged(["--verify"])).localDigest, "sha256");
    // An entry written before fts recorded fast digests.
    await editManifestEntry(cluster.dir, "d.bin", (parts) => {
      for (const part of parts) delete part.xxh128;
    });
    assert.equal((await fetchDamaged()).localDigest, "sha256");
  } finally {
    await cluster.stop();
  }
});

Deno.test("fast check: where XXH3-128 cannot load (no FFI for libxxhash, no WebAssembly), the destination is checked with SHA-256 and only the damaged part fetched", async () => {
  const size = 4 * MiB;
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "n.bin": size } });
  try {
    const source = join(cluster.work, "src", "n.bin");
    const dest = await newDest(cluster);
    await Deno.copyFile(source, join(dest, "n.bin"));
    await damageFile(join(dest, "n.bin"), 9 * PART + 7, 300);
    const result = await cluster.fts(["fetch", "n.bin", dest, "--json"], {
      denoFlags: ["--deny-ffi", "--v8-flags=--jitless"],
    });
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    await assertSameFile(join(dest, "n.bin"), source);
    assert.equal(summary.localDigest, "sha256");
    assert.equal(summary.partsFetched, 1, result.stdout);
    assert.equal(summary.partsPresent, size / PART - 1, result.stdout);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fast check: the fast digest decides which local parts are kept; --verify asks SHA-256", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "f.bin": 2 * MiB } });
  try {
    const source = join(cluster.work, "src", "f.bin");
    // Part 3's fast digest no longer matches its bytes: the check must reject
    // the (correct) local copy, which proves the fast digest is what it used.
    await editManifestEntry(cluster.dir, "f.bin", (parts) => {
      parts[3]!.xxh128 = "0".repeat(32);
    });
    const dest = await newDest(cluster);
    await Deno.copyFile(source, join(dest, "f.bin"));
    const fast = await fetchJson(cluster, "f.bin", dest);
    assert.equal(fast.partsFetched, 1);
    assert.equal(fast.bytesReceived, PART);
    // What was received was verified with SHA-256, and is right.
    await assertSameFile(join(dest, "f.bin"), source);

    const verify = await fetchJson(cluster, "f.bin", dest, ["--verify"]);
    assert.equal(verify.partsFetched, 0);
    assert.equal(verify.bytesReceived, 0);
    await assertSameFile(join(dest, "f.bin"), source);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fast check: received parts are checked with XXH3-128, SHA-256 deciding when it disagrees, and with SHA-256 alone under --verify", async () => {
  const size = 4 * PART;
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "q.bin": size } });
  try {
    const source = join(cluster.work, "src", "q.bin");
    // A wrong XXH3-128 in the entry: the part's SHA-256 says the bytes are right.
    await editManifestEntry(cluster.dir, "q.bin", (parts) => {
      parts[1]!.xxh128 = "0".repeat(32);
    });
    const dest = await newDest(cluster);
    const summary = await fetchJson(cluster, "q.bin", dest);
    await assertSameFile(join(dest, "q.bin"), source);
    assert.equal(summary.partsFetched, 4);
    assert.equal((summary as { digestMismatches?: number }).digestMismatches, 0);

    // Every copy of part 2 swapped for other bytes, and the entry's XXH3-128 made to match them:
    // XXH3-128 finds damage, not forgery (README, Limits); the SHA-256 of --verify finds this.
    const forged = new Uint8Array(PART).fill(0x5a);
    await forgePart(cluster.dir, "q.bin", 2, forged);
    const trusting = await newDest(cluster);
    await fetchJson(cluster, "q.bin", trusting);
    const fetched = await Deno.readFile(join(trusting, "q.bin"));
    assert.deepEqual(fetched.subarray(2 * PART, 3 * PART), forged);

    const verifying = await newDest(cluster);
    const refused = await cluster.fts(["fetch", "q.bin", verifying, "--verify"]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /part 2 .*digest mismatch/s);
    assert.equal(await Deno.stat(join(verifying, "q.bin")).catch(() => undefined), undefined);
  } finally {
    await cluster.stop();
  }
});
