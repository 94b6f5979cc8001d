/**
 * Every name the cluster accepts can be fetched: a name of 255 bytes (the
 * file system's limit) leaves no room for NAME.fts-partial, NAME.fts-state
 * or NAME.fts-lock, so those are shortened with a hash of the name; shorter
 * names keep the plain suffixes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { helperPath } from "../lib/client/helper_paths.ts";
import {
  assertSameFile,
  FtsProcess,
  newDest,
  startCluster,
  waitForVerifiedParts,
} from "./harness.ts";

const ASCII_255 = "a".repeat(251) + ".bin";
/** 127 two-byte characters and one byte: 255 bytes, a cut mid-character would be invalid. */
const UTF8_255 = "é".repeat(127) + "x";
const SHORT = "short.bin";

Deno.test("fetch: names of 255 bytes (ASCII and two-byte UTF-8) arrive whole, also after a killed fetch", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    partSize: "64KiB",
    files: { [ASCII_255]: 3 * 1024 * 1024, [UTF8_255]: 200 * 1024, [SHORT]: 1000 },
  });
  try {
    assert.equal(new TextEncoder().encode(UTF8_255).length, 255);
    const dest = await newDest(cluster);
    for (const name of [ASCII_255, UTF8_255, SHORT]) {
      const result = await cluster.fts(["fetch", name, dest]);
      assert.equal(result.code, 0, result.stderr);
      await assertSameFile(join(dest, name), join(cluster.work, "src", name));
    }
    assert.equal([...Deno.readDirSync(dest)].length, 3, "helper files left behind");

    // A killed fetch leaves its control file under the shortened name, and the next resumes.
    const again = await newDest(cluster);
    const state = helperPath(join(again, ASCII_255), ".fts-state");
    assert.ok(new TextEncoder().encode(state.slice(again.length + 1)).length <= 255);
    const first = new FtsProcess([
      "fetch",
      ASCII_255,
      again,
      "--data",
      cluster.dir,
      "--limit-rate",
      "512KiB",
      "--parallel",
      "1",
    ]);
    await waitForVerifiedParts(state, 4);
    first.kill("SIGKILL");
    await first.status;
    const result = await cluster.fts(["fetch", ASCII_255, again]);
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(again, ASCII_255), join(cluster.work, "src", ASCII_255));
    assert.deepEqual([...Deno.readDirSync(again)].map((e) => e.name), [ASCII_255]);

    // Short names keep the plain suffixes.
    assert.equal(helperPath("/d/short.bin", ".fts-lock"), "/d/short.bin.fts-lock");
    assert.equal(helperPath(`/d/${ASCII_255}`, ".fts-lock").length, "/d/".length + 255);
  } finally {
    await cluster.stop();
  }
});
