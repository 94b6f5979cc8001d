import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, startCluster } from "./harness.ts";

Deno.test("fetch: a preloaded file arrives byte-identical (6 servers, R=3)", async () => {
  const cluster = await startCluster({
    files: { "a.bin": 3 * 1024 * 1024 + 12345, "empty.bin": 0 },
  });
  try {
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    for (const name of ["a.bin", "empty.bin"]) {
      const result = await cluster.fts(["fetch", name, dest]);
      assert.equal(result.code, 0, result.stderr);
      await assertSameFile(join(dest, name), join(cluster.work, "src", name));
    }
    const leftovers = [...Deno.readDirSync(dest)].map((e) => e.name).sort();
    assert.deepEqual(leftovers, ["a.bin", "empty.bin"]);
  } finally {
    await cluster.stop();
  }
});
