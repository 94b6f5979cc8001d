/**
 * `fts status` calls a copy live only when its instance lists it: copies
 * gone from disk under a running instance make the file under-replicated
 * (or lost), not healthy.
 */
import assert from "node:assert/strict";
import { readManifestJson, startCluster, storedPartPath } from "./harness.ts";

Deno.test("status: copies deleted from disk under running instances (3 servers, R=2) are not counted live", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    clusterArgs: ["--heal-after", "1h"],
    files: { "e.bin": 600 * 1024 },
  });
  try {
    const entry = (await readManifestJson(cluster.dir)).files["e.bin"]!;
    const [first, second] = entry.parts as [(typeof entry.parts)[0], (typeof entry.parts)[0]];
    // Part 0 loses one copy, part 1 both.
    await Deno.remove(storedPartPath(cluster.dir, first.replicas[0]!, first.digest));
    for (const id of second.replicas) {
      await Deno.remove(storedPartPath(cluster.dir, id, second.digest));
    }
    const result = await cluster.fts(["status", "--json"]);
    assert.equal(result.code, 1, "a part is lost: " + result.stderr);
    const report = JSON.parse(result.stdout);
    assert.ok(report.instances.every((i: { up: boolean }) => i.up), result.stdout);
    const file = report.files.find((f: { name: string }) => f.name === "e.bin");
    assert.deepEqual(
      {
        minLive: file.minLiveReplicas,
        under: file.underReplicatedPartNumbers,
        lost: file.lostPartNumbers,
      },
      { minLive: 0, under: [0, 1], lost: [1] },
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("status: a supervisor that does not answer (stopped) is said so, not taken for healing off", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    clusterArgs: ["--heal-after", "1h"],
    files: { "s.bin": 10_000 },
  });
  try {
    const on = await cluster.fts(["status"]);
    assert.match(on.stdout, /healing: on, after 1h/);
    Deno.kill(cluster.supervisor.pid, "SIGSTOP");
    try {
      const stopped = await cluster.fts(["status"]);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(
        stopped.stdout,
        /healing: unknown: the cluster supervisor runs but did not answer/,
      );
      assert.doesNotMatch(stopped.stdout, /healing: off/);
    } finally {
      Deno.kill(cluster.supervisor.pid, "SIGCONT");
    }
  } finally {
    await cluster.stop();
  }
});
