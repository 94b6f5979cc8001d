import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, FtsProcess, readManifestJson, startCluster } from "./harness.ts";
import { censusOnDisk, offCount } from "./replicas.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import { loadConfig } from "../lib/state/config.ts";
import { repairCluster } from "../lib/ops/repair.ts";
import { REPAIR_LOCK } from "../lib/state/manifest_store.ts";
import { openLocker } from "../lib/state/open_manifest_store.ts";

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

Deno.test("healing's repair copies only for instances down past --heal-after; one down a moment counts as coming back (R=2)", async () => {
  const cluster = await startDirectCluster({
    servers: 4,
    replicas: 2,
    partSize: "256KiB",
    files: { "g.bin": 1024 * 1024 + 17 },
  });
  try {
    const config = (await loadConfig(cluster.dir))!;
    const holder = (await readManifestJson(cluster.dir)).files["g.bin"]!.parts[0]!.replicas[0]!;
    await cluster.killInstance(cluster.ports.indexOf(Number(holder)));
    // A heal started for another instance meets this one down, not yet known to be
    // (in etcd its lease outlives it by seconds): its copies still count.
    const early = await repairCluster(cluster.dir, config, { goneIds: new Set(["12345"]) });
    assert.deepEqual(early.down, [holder]);
    assert.equal(early.copied, 0, JSON.stringify(early));
    const listed = (await readManifestJson(cluster.dir)).files["g.bin"]!.parts[0]!.replicas;
    assert.ok(listed.includes(holder), `${holder} unlisted: ${listed}`);
    // Its time up, it is healed around.
    const due = await repairCluster(cluster.dir, config, { goneIds: new Set([holder]) });
    assert.ok(due.copied > 0, JSON.stringify(due));
    const census = await censusOnDisk(
      cluster.dir,
      cluster.ports.filter((p) => p !== Number(holder)),
    );
    assert.deepEqual(offCount(census, 2), []);
  } finally {
    await cluster.stop();
  }
});

Deno.test("repair: waiting for the repair lock another run holds says so, then runs", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "w.bin": 100_000 } });
  const held = Promise.withResolvers<void>();
  const taken = Promise.withResolvers<void>();
  // This test holds the lock, as a long scrub or a healing run would.
  const holder = openLocker(cluster.dir).withLock(REPAIR_LOCK, async () => {
    taken.resolve();
    await held.promise;
  });
  try {
    await taken.promise;
    const repair = new FtsProcess(["repair", "--data", cluster.dir]);
    await repair.waitFor(
      /^waiting for the repair lock: another repair, scrub or healing run holds it/m,
    );
    held.resolve();
    await holder;
    const result = await repair.result();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^repair: /m);
  } finally {
    held.resolve();
    await holder.catch(() => {});
    await cluster.stop();
  }
});

Deno.test("repair: an instance whose part store broke is named as one that answers but cannot list its parts, and logs why", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "b.bin": 100_000 } });
  const port = String(cluster.ports[1]);
  const parts = join(cluster.dir, "instances", port, "parts");
  try {
    await Deno.rename(parts, `${parts}.aside`);
    await Deno.writeTextFile(parts, "not a directory\n");
    const repair = await cluster.fts(["repair", "--dry-run"]);
    assert.match(
      repair.stdout,
      new RegExp(
        `down: ${port} \\(${port} answers, but cannot list its parts: Instance ${port} cannot ` +
          `use its files \\(NotADirectory\\); its operator must look at its log\\)`,
      ),
    );
    // The log says what and where; the client was told only the kind.
    // (The supervisor copies each instance's output into its log as it comes.)
    const logged = /error in part\.list: NotADirectory: .*parts/;
    let log = "";
    for (let i = 0; i < 100 && !logged.test(log); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      log = await Deno.readTextFile(join(cluster.dir, "logs", `${port}.log`));
    }
    assert.match(log, logged);
  } finally {
    await Deno.remove(parts).catch(() => {});
    await Deno.rename(`${parts}.aside`, parts).catch(() => {});
    await cluster.stop();
  }
});
