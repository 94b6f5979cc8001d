/**
 * Unit tests of the quick check of received parts: a sink hashes the bytes
 * with XXH3-128 on their way in (FilePartSink, MemoryPartSink) and the part
 * reader checks a part with its entry's XXH3-128, its SHA-256 deciding when
 * the two disagree or under `sha256Only` (`fetch --verify`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FilePartSink } from "../lib/client/file_part_sink.ts";
import { MemoryPartSink } from "../lib/client/memory_part_sink.ts";
import { PartReader, type PartReadEvent, type PartToRead } from "../lib/client/part_reader.ts";
import { PeerPool } from "../lib/client/peer_pool.ts";
import { sha256FileRangeSync } from "../lib/hash/sha256.ts";
import { Xxh128, xxh128Hex } from "../lib/hash/xxh128.ts";
import { seededBytes, sha256, storeBytes, withTempDir } from "./unit_helpers.ts";
import { flipByte, type Instance, withInstances } from "./unit_instances.ts";

const PART_BYTES = 3 * 1024 * 1024 + 77;

/** A memory sink that counts the SHA-256 digests asked of it. */
class _CountingSink extends MemoryPartSink {
  sha256Asked = 0;

  override digest(): Promise<{ digest: string; bytes: number }> {
    this.sha256Asked++;
    return super.digest();
  }
}

async function _withPart(
  count: number,
  fn: (part: PartToRead, instances: Instance[], bytes: Uint8Array) => Promise<void>,
): Promise<void> {
  await withInstances(count, async (instances) => {
    const bytes = seededBytes(PART_BYTES, 11);
    let digest = "";
    for (const { store } of instances) digest = await storeBytes(store, bytes);
    const ids = instances.map((_, i) => String.fromCharCode(97 + i));
    await fn(
      {
        fileName: "f.bin",
        index: 0,
        digest,
        xxh128: xxh128Hex(bytes),
        size: bytes.length,
        replicas: ids,
      },
      instances,
      bytes,
    );
  });
}

async function _read(
  instances: Instance[],
  part: PartToRead,
  options: { sha256Only?: boolean } = {},
): Promise<{ sink: _CountingSink; result: unknown; events: PartReadEvent[]; reader: PartReader }> {
  const events: PartReadEvent[] = [];
  const pool = new PeerPool({ connectTimeoutMs: 2000, stallTimeoutMs: 2000 });
  const reader = new PartReader({
    pool,
    addressOf: (id) => instances[id.charCodeAt(0) - 97]!.address,
    onEvent: (event) => events.push(event),
    ...options,
  });
  try {
    const sink = new _CountingSink(part.size);
    const result = await reader.read(part, sink);
    await reader.reportsSettled();
    return { sink, result, events, reader };
  } finally {
    pool.closeAll();
  }
}

Deno.test("quick check: a part whose XXH3-128 matches is verified without hashing its SHA-256", async () => {
  await _withPart(1, async (part, instances, bytes) => {
    const { sink, result } = await _read(instances, part);
    assert.deepEqual(result, { from: "a", verified: true });
    assert.deepEqual(sink.bytes, bytes);
    assert.equal(sink.sha256Asked, 0);
  });
});

Deno.test("quick check: a wrong XXH3-128 in the entry leaves SHA-256 to decide, and blames no replica", async () => {
  await _withPart(1, async (part, instances, bytes) => {
    const { sink, result, events, reader } = await _read(instances, {
      ...part,
      xxh128: "0".repeat(32),
    });
    assert.deepEqual(result, { from: "a", verified: true });
    assert.deepEqual(sink.bytes, bytes);
    assert.equal(sink.sha256Asked, 1);
    assert.equal(reader.counters.digestMismatches, 0);
    assert.deepEqual(events.filter((e) => e.type === "mismatch"), []);
  });
});

Deno.test("quick check: sha256Only (fetch --verify) checks SHA-256 even when the XXH3-128 matches", async () => {
  await _withPart(1, async (part, instances) => {
    const { sink, result } = await _read(instances, part, { sha256Only: true });
    assert.deepEqual(result, { from: "a", verified: true });
    assert.equal(sink.sha256Asked, 1);
  });
});

Deno.test("quick check: a replica's damaged copy fails both digests; the part comes from the other", async () => {
  await _withPart(2, async (part, instances, bytes) => {
    await flipByte(instances[0]!.store, part.digest);
    const { sink, result, events, reader } = await _read(instances, part);
    assert.deepEqual(result, { from: "b", verified: true });
    assert.deepEqual(sink.bytes, bytes);
    assert.deepEqual(events.filter((e) => e.type === "mismatch"), [
      { type: "mismatch", part: 0, replicas: ["a"] },
    ]);
    assert.equal(reader.counters.digestMismatches, 1);
  });
});

for (const small of [false, true]) {
  Deno.test(`FilePartSink (${small ? "small" : "large"} writes): hashes bytes written from 0 in order, starts over at 0, and gives up on a gap`, async () => {
    await withTempDir("fts-quick-sink-", async (dir) => {
      const bytes = seededBytes(small ? 40_000 : 2_500_000, 12);
      const base = 100;
      const file = await Deno.open(join(dir, "f"), { read: true, write: true, create: true });
      const quick = new Xxh128();
      try {
        const sink = () =>
          new FilePartSink({
            file,
            base,
            index: 0,
            dir,
            small,
            quick,
            hash: () => Promise.resolve(sha256FileRangeSync(file, base, bytes.length)!),
          });
        const half = Math.floor(bytes.length / 2);
        const whole = sink();
        await whole.write(0, bytes.subarray(0, half));
        await whole.write(half, bytes.subarray(half));
        assert.deepEqual(whole.quickDigest(), { digest: xxh128Hex(bytes), bytes: bytes.length });
        assert.deepEqual(await whole.digest(), { digest: sha256(bytes), bytes: bytes.length });

        // An attempt that starts over at 0 (after wrong bytes) is hashed afresh.
        const again = sink();
        await again.write(0, new Uint8Array(half));
        await again.write(0, bytes.subarray(0, half));
        await again.write(half, bytes.subarray(half));
        assert.deepEqual(again.quickDigest(), { digest: xxh128Hex(bytes), bytes: bytes.length });

        // Bytes that do not follow what was hashed: no quick digest, until a start at 0.
        const gap = sink();
        await gap.write(0, bytes.subarray(0, 10));
        await gap.write(20, bytes.subarray(20, half));
        assert.equal(gap.quickDigest(), undefined);
        const resumed = sink();
        await resumed.write(half, bytes.subarray(half));
        assert.equal(resumed.quickDigest(), undefined);
        await resumed.write(0, bytes);
        assert.deepEqual(resumed.quickDigest(), { digest: xxh128Hex(bytes), bytes: bytes.length });
        assert.deepEqual(await resumed.digest(), { digest: sha256(bytes), bytes: bytes.length });
      } finally {
        file.close();
      }
    });
  });
}

Deno.test("MemoryPartSink.quickDigest() is the XXH3-128 of the bytes held from 0", async () => {
  const bytes = seededBytes(100_000, 13);
  const sink = new MemoryPartSink(bytes.length);
  await sink.write(0, bytes.subarray(0, 60_000));
  assert.deepEqual(sink.quickDigest(), {
    digest: xxh128Hex(bytes.subarray(0, 60_000)),
    bytes: 60_000,
  });
  await sink.write(60_000, bytes.subarray(60_000));
  assert.deepEqual(sink.quickDigest(), { digest: xxh128Hex(bytes), bytes: bytes.length });
});
