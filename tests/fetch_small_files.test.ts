/**
 * A file of one small part is fetched the short way (lib/client/fetch_small.ts):
 * no job lock file, no control file. These tests hold it to the rules the
 * long way keeps: another fetch of the same file never works in a partial
 * file the short way is filling, concurrent fetches all succeed and leave
 * only the file, and a short fetch that fails leaves nothing behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fetchFile } from "../lib/client/fetch.ts";
import {
  assertSameFile,
  FtsProcess,
  newDest,
  readManifestJson,
  startCluster,
  type TestCluster,
} from "./harness.ts";

const SMALL = 20_000;

function servers(cluster: TestCluster): string[] {
  return cluster.ports.map((port) => `127.0.0.1:${port}`);
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("fetch: a full fetch waits while another fetch holds the small file's partial file, then finds the file in place", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "s.bin": SMALL } });
  try {
    const dest = await newDest(cluster);
    const partialPath = join(dest, "s.bin.fts-partial");
    // What a short fetch does first: create the partial file and flock it.
    const held = Deno.openSync(partialPath, { read: true, write: true, createNew: true });
    held.lockSync(true);
    const events: string[] = [];
    let settled = false;
    const fetching = fetchFile({
      name: "s.bin",
      destDir: dest,
      servers: servers(cluster),
      onEvent: (event) => events.push(event.type),
    }).finally(() => settled = true);
    for (let waited = 0; !events.includes("waiting"); waited += 20) {
      assert.ok(!settled, `the fetch did not wait for the held partial file: ${events.join(" ")}`);
      assert.ok(waited < 10_000, `no "waiting" event in 10 s: ${events.join(" ")}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(settled, false);
    // The holder finishes: the verified bytes are renamed into place, then the flock goes.
    held.writeSync(await Deno.readFile(join(cluster.work, "src", "s.bin")));
    Deno.renameSync(partialPath, join(dest, "s.bin"));
    held.close();
    const result = await fetching;
    assert.equal(result.partsPresent, 1, "the file put in place meanwhile is checked, not fetched");
    assert.equal(result.partsFetched, 0);
    await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
    assert.deepEqual(await listing(dest), ["s.bin"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: eight fetches of one small file into one directory at once all succeed and leave only the file", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "s.bin": SMALL } });
  try {
    for (let round = 0; round < 2; round++) {
      const dest = await newDest(cluster);
      const fetches = Array.from(
        { length: 8 },
        () => new FtsProcess(["fetch", "s.bin", dest, "--quiet", "--data", cluster.dir]),
      );
      for (const result of await Promise.all(fetches.map((fetch) => fetch.result()))) {
        assert.equal(result.code, 0, result.stderr);
      }
      await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
      assert.deepEqual(await listing(dest), ["s.bin"]);
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a small file whose every copy is down fails and leaves nothing in the destination", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "s.bin": SMALL } });
  try {
    const entry = (await readManifestJson(cluster.dir)).files["s.bin"]!;
    assert.equal(entry.parts.length, 1);
    for (const id of entry.parts[0]!.replicas) await cluster.kill(Number(id));
    const dest = await newDest(cluster);
    const failed = await cluster.fts(["fetch", "s.bin", dest, "--timeout", "1s"]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /s\.bin/);
    assert.deepEqual(await listing(dest), []);
  } finally {
    await cluster.stop();
  }
});
