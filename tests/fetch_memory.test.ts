import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, type FtsProcess, startCluster } from "./harness.ts";

const MiB = 1024 * 1024;

/** Polls the peak resident set (VmHWM) of a running process until it exits. */
async function _peakRssBytes(process: FtsProcess): Promise<number> {
  let peak = 0;
  let done = false;
  process.status.then(() => (done = true));
  while (!done) {
    try {
      const status = await Deno.readTextFile(`/proc/${process.pid}/status`);
      const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
      peak = Math.max(peak, kb * 1024);
    } catch { /* exited between checks */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  return peak;
}

Deno.test("fetch: memory: a file 128x its part size keeps client memory flat (stream, never buffer)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "1MiB",
    files: { "small.bin": 8 * MiB, "large.bin": 128 * MiB },
  });
  try {
    const peaks: Record<string, number> = {};
    for (const name of ["small.bin", "large.bin"]) {
      const dest = join(cluster.work, `dest-${name}`);
      await Deno.mkdir(dest);
      const fetch = cluster.spawnFetch(name, dest, ["--quiet"]);
      peaks[name] = await _peakRssBytes(fetch);
      const result = await fetch.result();
      assert.equal(result.code, 0, result.stderr);
      await assertSameFile(join(dest, name), join(cluster.work, "src", name));
    }
    const growth = peaks["large.bin"]! - peaks["small.bin"]!;
    // 16x more data may cost a little allocator slack, not the file or its parts.
    assert.ok(
      growth < 32 * MiB,
      `peak RSS grew by ${(growth / MiB).toFixed(1)} MiB (${JSON.stringify(peaks)})`,
    );
  } finally {
    await cluster.stop();
  }
});
