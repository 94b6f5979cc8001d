/**
 * Repair records the copies it made at the end (and every few seconds) under
 * the parts lock. A copy can vanish between being made and being recorded:
 * an `fts rm` frees the part on every instance, and a re-upload of the same
 * bytes publishes a new entry listing other holders. The record must then not
 * list the instance whose copy is gone. The test deletes the new copy from
 * the target's store the moment repair reports it, which is what that free
 * does to it, and checks the manifest afterwards.
 *
 * The other way round: a surplus copy repair drops may be listed by an entry
 * published meanwhile; repair must neither unlist it there nor delete it.
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { requireConfig } from "../lib/state/config.ts";
import { rewriteManifestSync, updateManifest } from "./manifest_util.ts";
import { rankInstances } from "../lib/state/placement.ts";
import { repairCluster, type RepairEvent } from "../lib/ops/repair.ts";
import { readManifestJson, startCluster, storedPartPath } from "./harness.ts";
import { censusOnDisk, offCount } from "./replicas.ts";

const KiB = 1024;

Deno.test("repair: a copy freed between being made and being recorded is not listed in the manifest", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "256KiB",
    files: { "a.bin": 3 * 256 * KiB + 100 },
    // Healing would start a repair of its own once the instance has been down a while.
    clusterArgs: ["--heal-after", "0"],
  });
  try {
    const before = await readManifestJson(cluster.dir);
    const [listedFirst] = before.files["a.bin"]!.parts[0]!.replicas;
    const down = Number(listedFirst);
    // Down, its copies no longer count: repair copies its parts to instances that list none.
    await cluster.kill(down);
    const live = cluster.ports.filter((port) => port !== down);

    const config = await requireConfig(cluster.dir);
    let freed: { digest: string; to: string; existed: boolean } | undefined;
    const onEvent = (event: RepairEvent) => {
      if (event.type !== "copy" || freed) return;
      // What freeUnreferencedParts does to the copy just made.
      const path = storedPartPath(cluster.dir, event.to, event.digest);
      let existed = true;
      try {
        Deno.removeSync(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
        existed = false;
      }
      freed = { digest: event.digest, to: event.to, existed };
    };
    const report = await repairCluster(cluster.dir, config, { onEvent });
    assert.ok(freed, "repair made no copy");
    assert.ok(freed.existed, `the copy on ${freed.to} was not stored when repair reported it`);
    assert.ok(report.copied >= 1);

    const after = await readManifestJson(cluster.dir);
    const parts = Object.values(after.files).flatMap((file) =>
      file.parts.filter((part) => part.digest === freed!.digest)
    );
    assert.ok(parts.length > 0);
    for (const part of parts) {
      assert.ok(
        !part.replicas.includes(freed.to),
        `the manifest lists ${freed.to} for part ${
          freed.digest.slice(0, 12)
        }, whose copy is gone (${part.replicas.join(", ")})`,
      );
      // The surviving copy stays listed: the part is short, not lost.
      assert.ok(part.replicas.length >= 1);
    }

    // Every listed copy is really there, and the next repair brings the part back to R.
    for (const part of await censusOnDisk(cluster.dir, live)) {
      for (const id of part.listed) {
        assert.ok(part.good.includes(id), `part ${part.index} is listed on ${id} without a copy`);
      }
    }
    const again = await cluster.fts(["repair"]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const census = await censusOnDisk(cluster.dir, live);
    assert.deepEqual(offCount(census, 2), []);
    for (const part of census) assert.deepEqual(part.listed, part.good);
  } finally {
    await cluster.stop();
  }
});

Deno.test("repair: a surplus copy that an entry published during the repair lists stays listed and stored", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "256KiB",
    files: { "a.bin": 256 * KiB + 100 },
    clusterArgs: ["--heal-after", "0"],
  });
  try {
    const { dir } = cluster;
    const ids = cluster.ports.map(String);
    const { digest, replicas } = (await readManifestJson(dir)).files["a.bin"]!.parts[0]!;
    // A third copy, listed: one too many, on the worst-ranked of the three, which repair drops.
    const extra = rankInstances(digest, ids).find((id) => !replicas.includes(id))!;
    const extraPath = storedPartPath(dir, extra, digest);
    await Deno.mkdir(dirname(extraPath), { recursive: true });
    await Deno.copyFile(storedPartPath(dir, replicas[0]!, digest), extraPath);
    await updateManifest(dir, (manifest) => {
      manifest.files["a.bin"]!.parts[0]!.replicas.push(extra);
    });
    const kept = replicas[1]!;

    const config = await requireConfig(dir);
    let dropped: string | undefined;
    const onEvent = (event: RepairEvent) => {
      if (event.type !== "drop" || dropped) return;
      dropped = event.id;
      // Meanwhile an rm and a re-upload of the same bytes: a new entry (a new
      // `created`) that lists the copy being dropped. Written the way a
      // writer would, synchronously so it lands before repair records.
      rewriteManifestSync(dir, (manifest) => {
        const entry = manifest.files["a.bin"]!;
        entry.created = new Date(Date.parse(entry.created) + 1_000).toISOString();
        entry.parts[0]!.replicas = [kept, event.id];
      });
    };
    await repairCluster(dir, config, { onEvent });
    assert.equal(dropped, extra, "repair did not drop the surplus copy");

    const part = (await readManifestJson(dir)).files["a.bin"]!.parts[0]!;
    assert.deepEqual([...part.replicas].sort(), [kept, extra].sort());
    for (const id of part.replicas) {
      const size = (await Deno.stat(storedPartPath(dir, id, digest))).size;
      assert.equal(size, part.size, `copy on ${id}`);
    }
  } finally {
    await cluster.stop();
  }
});
