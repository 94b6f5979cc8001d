import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, readManifestJson, startCluster } from "./harness.ts";
import { censusOnDisk, offCount } from "./replicas.ts";

const MiB = 1024 * 1024;

Deno.test("repair: R=3, 2 instances killed: every part back to 3 live verified copies; then 2 others killed: every file still fetches", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "a.bin": 2 * MiB + 123, "b.bin": MiB + 7 },
  });
  try {
    const [k1, k2, k3, k4, ...rest] = cluster.ports as [number, number, number, number, number];
    await cluster.kill(k1);
    await cluster.kill(k2);
    const live = [k3, k4, ...rest];

    // --dry-run says what it would do and changes nothing.
    const before = await readManifestJson(cluster.dir);
    const dry = await cluster.fts(["repair", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would copy part \d+ of "(a|b)\.bin"/);
    assert.deepEqual(await readManifestJson(cluster.dir), before);
    assert.ok(offCount(await censusOnDisk(cluster.dir, live), 3).length > 0);

    const repair = await cluster.fts(["repair"]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.match(repair.stdout, /copied part \d+ of "(a|b)\.bin"/);
    const census = await censusOnDisk(cluster.dir, live);
    assert.deepEqual(offCount(census, 3), []);
    for (const part of census) {
      // The manifest lists exactly the live instances that hold a good copy.
      assert.deepEqual(part.listed, part.good, `part ${part.index} of ${part.file}`);
      assert.deepEqual(part.bad, []);
    }

    // Idempotent: a second run finds nothing to do.
    const again = await cluster.fts(["repair"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to do/);
    assert.doesNotMatch(again.stdout, /copied/);

    await cluster.kill(k3);
    await cluster.kill(k4);
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    for (const name of ["a.bin", "b.bin"]) {
      const fetch = await cluster.fts(["fetch", name, dest]);
      assert.equal(fetch.code, 0, fetch.stderr);
      await assertSameFile(join(dest, name), join(cluster.work, "src", name));
    }
  } finally {
    await cluster.stop();
  }
});
