import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, startCluster } from "./harness.ts";

const MiB = 1024 * 1024;

Deno.test("fetch: 9 concurrent clients, 3 files, 3 clients each (6 servers, R=3)", async () => {
  const files = { "one.bin": 3 * MiB, "two.bin": 2 * MiB + 99, "three.bin": 4 * MiB };
  const cluster = await startCluster({ servers: 6, replicas: 3, files });
  try {
    const jobs = Object.keys(files).flatMap((name) =>
      [0, 1, 2].map((i) => ({ name, dest: join(cluster.work, `dest-${name}-${i}`) }))
    );
    for (const job of jobs) await Deno.mkdir(job.dest);
    const fetches = jobs.map((job) => cluster.spawnFetch(job.name, job.dest, ["--quiet"]));
    const results = await Promise.all(fetches.map((f) => f.result()));
    for (const [i, result] of results.entries()) {
      assert.equal(result.code, 0, result.stderr);
      const job = jobs[i]!;
      await assertSameFile(join(job.dest, job.name), join(cluster.work, "src", job.name));
    }
  } finally {
    await cluster.stop();
  }
});
