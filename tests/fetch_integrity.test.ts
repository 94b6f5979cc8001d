import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  damageFile,
  readManifestJson,
  startCluster,
  storedPartPath,
} from "./harness.ts";

const MiB = 1024 * 1024;

Deno.test("fetch: integrity: corrupted stored copies are detected, avoided and quarantined (R=3, 2 bad copies per part)", async () => {
  const cluster = await startCluster({ servers: 6, replicas: 3, files: { "x.bin": 2 * MiB } });
  try {
    const entry = (await readManifestJson(cluster.dir)).files["x.bin"]!;
    for (const part of entry.parts) {
      // Two of three copies of every part get a flipped byte: at least one good copy remains.
      for (const id of part.replicas.slice(0, 2)) {
        await damageFile(storedPartPath(cluster.dir, id, part.digest), 1000, 1);
      }
    }
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const result = await cluster.fts(["fetch", "x.bin", dest, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(dest, "x.bin"), join(cluster.work, "src", "x.bin"));
    const summary = JSON.parse(result.stdout);
    assert.ok(summary.digestMismatches >= 1, result.stdout);
    // Every corrupt copy the fetch ran into was reported and moved to quarantine.
    const events = result.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) =>
      JSON.parse(l)
    );
    const reported = events.filter((e) => e.type === "mismatch").flatMap((e) =>
      e.replicas.map((id: string) => ({ id, digest: entry.parts[e.part]!.digest }))
    );
    // A part that failed over mid-way (a slow replica on a loaded machine) names
    // every replica that gave it bytes; the good ones among them re-hash their
    // copy and keep it.
    const bad = new Set(
      entry.parts.flatMap((p) => p.replicas.slice(0, 2).map((id) => `${id} ${p.digest}`)),
    );
    assert.ok(reported.some(({ id, digest }) => bad.has(`${id} ${digest}`)), result.stderr);
    for (const part of entry.parts) {
      await Deno.stat(storedPartPath(cluster.dir, part.replicas[2]!, part.digest));
    }
    // The fetch waits for its reports to be answered before it exits, so the
    // copies are in quarantine by now (the process exiting once cut them off).
    for (const { id, digest } of reported.filter(({ id, digest }) => bad.has(`${id} ${digest}`))) {
      const quarantined = join(cluster.dir, "instances", id, "quarantine", digest);
      await Deno.stat(quarantined).catch((cause) => {
        throw new Error(`copy of ${digest} on ${id} not quarantined`, { cause });
      });
      await assert.rejects(Deno.stat(storedPartPath(cluster.dir, id, digest)));
    }
    // A second fetch is served only good copies: no mismatch at all.
    const dest2 = join(cluster.work, "dest2");
    await Deno.mkdir(dest2);
    const again = await cluster.fts(["fetch", "x.bin", dest2, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    await assertSameFile(join(dest2, "x.bin"), join(cluster.work, "src", "x.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: integrity: every copy of a part corrupt fails naming the part and keeps no bad bytes", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "y.bin": MiB } });
  try {
    const entry = (await readManifestJson(cluster.dir)).files["y.bin"]!;
    const part = entry.parts[1]!;
    for (const id of part.replicas) {
      await damageFile(storedPartPath(cluster.dir, id, part.digest), 5, 1);
    }
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const result = await cluster.fts(["fetch", "y.bin", dest]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /part 1 of "y\.bin"/);
    await assert.rejects(Deno.stat(join(dest, "y.bin")));
  } finally {
    await cluster.stop();
  }
});
