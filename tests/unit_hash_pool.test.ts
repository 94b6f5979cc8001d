import assert from "node:assert/strict";
import { join } from "node:path";
import { HashPool } from "../lib/hash/hash_pool.ts";
import { xxh128Hex } from "../lib/hash/xxh128.ts";
import { seededBytes, sha256, withTempDir } from "./unit_helpers.ts";

Deno.test("HashPool.hashRange() hashes a file range and reports a short read at end of file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-hash-pool-" });
  const pool = new HashPool({ workers: 2 });
  try {
    const path = join(dir, "f.bin");
    const data = seededBytes(3 * 1024 * 1024 + 5, 3);
    await Deno.writeFile(path, data);
    const whole = await pool.hashRange({ path, start: 1000, length: 2 * 1024 * 1024 });
    assert.deepEqual(whole, {
      digest: sha256(data.subarray(1000, 1000 + 2 * 1024 * 1024)),
      bytes: 2 * 1024 * 1024,
    });
    const tail = await pool.hashRange({ path, start: 3 * 1024 * 1024, length: 1024 });
    assert.deepEqual(tail, { digest: sha256(data.subarray(3 * 1024 * 1024)), bytes: 5 });
    await assert.rejects(
      pool.hashRange({ path: join(dir, "missing.bin"), start: 0, length: 1 }),
      /Cannot read/,
    );
  } finally {
    pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("HashPool.hashRange() spreads ranges over its workers and answers each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-hash-pool-" });
  const pool = new HashPool({ workers: 2 });
  try {
    const path = join(dir, "f.bin");
    const data = seededBytes(64 * 1024, 5);
    await Deno.writeFile(path, data);
    const ranges = Array.from({ length: 16 }, (_, i) => ({ path, start: i * 4096, length: 4096 }));
    const results = await Promise.all(ranges.map((range) => pool.hashRange(range)));
    assert.deepEqual(
      results,
      ranges.map(({ start }) => ({
        digest: sha256(data.subarray(start, start + 4096)),
        bytes: 4096,
      })),
    );
  } finally {
    pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("HashPool.hashRange() computes XXH3-128 when asked, after a load() or without one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-hash-pool-" });
  const pool = new HashPool({ workers: 2 });
  try {
    const path = join(dir, "f.bin");
    const data = seededBytes(1024 * 1024 + 7, 9);
    await Deno.writeFile(path, data);
    const ranges = [0, 1, 2, 3].map((i) => ({ path, start: i * 300_000, length: 300_000 }));
    const fast = await Promise.all(
      ranges.map((range) => pool.hashRange({ ...range, algorithm: "xxh128" })),
    );
    pool.load("sha256");
    const slow = await Promise.all(ranges.map((range) => pool.hashRange(range)));
    for (const [i, { start }] of ranges.entries()) {
      const bytes = data.subarray(start, start + 300_000);
      assert.deepEqual(fast[i], { digest: xxh128Hex(bytes), bytes: bytes.length });
      assert.deepEqual(slow[i], { digest: sha256(bytes), bytes: bytes.length });
    }
  } finally {
    pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("HashPool.close() rejects pending and later ranges", async () => {
  const pool = new HashPool({ workers: 1 });
  const pending = pool.hashRange({ path: "/nonexistent/fts", start: 0, length: 1 });
  pool.close();
  await assert.rejects(pending, /closed|Cannot read/);
  await assert.rejects(pool.hashRange({ path: "/nonexistent/fts", start: 0, length: 1 }), /closed/);
});

Deno.test("HashPool: a worker that dies fails its ranges, later ranges go to the others, none hangs", async () => {
  await withTempDir("fts-unit-hash-", async (dir) => {
    const path = join(dir, "data.bin");
    const bytes = crypto.getRandomValues(new Uint8Array(50_000));
    await Deno.writeFile(path, bytes);
    const pool = new HashPool({
      workers: 2,
      module: new URL("./crashing_hash_worker.ts", import.meta.url),
    });
    try {
      // The first range goes to worker 0, which dies on it.
      await assert.rejects(
        pool.hashRange({ path: join(dir, "crash"), start: 0, length: 10 }),
        /A hash worker failed/,
      );
      // Worker 1 still answers, every time.
      for (let i = 0; i < 3; i++) {
        const result = await pool.hashRange({ path, start: 0, length: bytes.length });
        assert.equal(result.digest, sha256(bytes));
      }
      // Once every worker is dead, a range fails at once instead of waiting forever.
      await assert.rejects(
        pool.hashRange({ path: join(dir, "crash"), start: 0, length: 10 }),
        /A hash worker failed/,
      );
      await assert.rejects(pool.hashRange({ path, start: 0, length: 10 }), /A hash worker failed/);
    } finally {
      pool.close();
    }
  });
});
