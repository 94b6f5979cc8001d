/**
 * Healing around an instance whose process lives and answers, but whose part
 * store is broken underneath it: its copies serve no one, so they must be
 * made again elsewhere, and dropped again once the store reads.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, FtsProcess, mustRun, readManifestJson, startCluster } from "./harness.ts";
import { settledCopies, waitUntil } from "./replicas.ts";

const MiB = 1024 * 1024;
/** Generous bound for healing on a loaded 2-core machine; the heal itself takes ~2 s here. */
const HEAL_DEADLINE_MS = 60_000;

Deno.test("cluster --heal-after 2s: an instance whose parts directory is replaced by a file is healed around; once it is back, surplus copies go (R=3)", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "s.bin": 2 * MiB + 5 },
    clusterArgs: ["--heal-after", "2s"],
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    const victim = Number(manifest.files["s.bin"]!.parts[0]!.replicas[0]);
    const others = cluster.ports.filter((port) => port !== victim);
    // The instance runs on and answers every probe; only its store is gone.
    const parts = join(cluster.dir, "instances", String(victim), "parts");
    await Deno.rename(parts, `${parts}.away`);
    await Deno.writeTextFile(parts, "not a directory\n");
    await waitUntil(
      () => settledCopies(cluster.dir, others, 3),
      HEAL_DEADLINE_MS,
      "every part to have 3 good copies on the other instances, listed",
    );
    await cluster.supervisor.waitFor(
      new RegExp(`instance ${victim} answers but cannot read .*: down for healing`),
    );

    // Its store back: it serves again, and each part ends with exactly R copies.
    await Deno.remove(parts);
    await Deno.rename(`${parts}.away`, parts);
    await cluster.supervisor.waitFor(new RegExp(`instance ${victim} reads its parts again`));
    await waitUntil(
      () => settledCopies(cluster.dir, cluster.ports, 3),
      HEAL_DEADLINE_MS,
      "every part to have exactly 3 copies again",
    );
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetch = await cluster.fts(["fetch", "s.bin", dest]);
    assert.equal(fetch.code, 0, fetch.stderr);
    await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("cluster --heal-after 2s: a killed instance's port served from another --data (a copy of the directory) does not stand in for it: its parts are healed around (R=2)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "o.bin": 2 * MiB + 5 },
    clusterArgs: ["--heal-after", "2s"],
  });
  let stranger: FtsProcess | undefined;
  try {
    const manifest = await readManifestJson(cluster.dir);
    const victim = Number(manifest.files["o.bin"]!.parts[0]!.replicas[0]);
    const others = cluster.ports.filter((port) => port !== victim);
    // A backup of the data directory, holding the same copies and cluster id.
    const copy = join(cluster.work, "copy");
    await mustRun("cp", ["-a", cluster.dir, copy]);
    await cluster.kill(victim);
    stranger = new FtsProcess(["serve", "--port", String(victim), "--data", copy]);
    await stranger.waitFor(/ready/);
    await cluster.supervisor.waitFor(
      new RegExp(`heal: instance ${victim} down for 2\\.0 s`),
      HEAL_DEADLINE_MS,
    );
    await waitUntil(
      () => settledCopies(cluster.dir, others, 2),
      HEAL_DEADLINE_MS,
      "every part to have 2 good copies on the cluster's own live instances, listed",
    );
  } finally {
    stranger?.kill("SIGKILL");
    await stranger?.status;
    await cluster.stop();
  }
});
