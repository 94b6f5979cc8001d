import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, instanceStats, readManifestJson, startCluster } from "./harness.ts";

const MiB = 1024 * 1024;

async function _pid(dir: string, port: number): Promise<number> {
  return Number(await Deno.readTextFile(join(dir, "run", `${port}.pid`)));
}

Deno.test("fetch: stalled instance: accepts connections and then says nothing (R=3, 2 stalled)", async () => {
  const cluster = await startCluster({ servers: 6, replicas: 3, files: { "s.bin": 2 * MiB } });
  // SIGSTOP: the kernel still completes the TCP handshake, the process never answers.
  // Fetch asks part 0 of its first replica first, so that one is stalled: fixed ports
  // might hold no part a fetch asks them first for (placement follows the port range).
  const parts = (await readManifestJson(cluster.dir)).files["s.bin"]!.parts;
  const first = Number(parts[0]!.replicas[0]);
  const stalled = [first, cluster.ports.find((port) => port !== first)!];
  const pids = await Promise.all(stalled.map((port) => _pid(cluster.dir, port)));
  try {
    for (const pid of pids) Deno.kill(pid, "SIGSTOP");
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const result = await cluster.fts(["fetch", "s.bin", dest, "--json", "--timeout", "1s"]);
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
    const events = result.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) =>
      JSON.parse(l)
    );
    const timeouts = events.filter((e) =>
      e.type === "failover" && stalled.includes(Number(e.from)) &&
      /No data for|took over/.test(e.reason)
    );
    assert.ok(timeouts.length >= 1, `no stall was detected: ${result.stderr}`);
  } finally {
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await cluster.stop();
  }
});

Deno.test("fetch: stalled instance: goes silent mid-part, the part continues from another replica", async () => {
  const cluster = await startCluster({
    servers: 5,
    replicas: 3,
    partSize: "1MiB",
    files: { "m.bin": 4 * MiB },
    clusterArgs: ["--limit-rate", "1MiB"],
  });
  const stopped: number[] = [];
  try {
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetch = cluster.spawnFetch("m.bin", dest, [
      "--json",
      "--parallel",
      "1",
      "--timeout",
      "1s",
    ]);
    // Find the instance streaming right now and freeze it.
    const deadline = Date.now() + 20_000;
    while (stopped.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      for (const port of cluster.ports) {
        const stats = await instanceStats(`127.0.0.1:${port}`).catch(() => undefined);
        // Served some bytes but not a whole number of parts: inside a part now.
        const served = stats?.bytesServed ?? 0;
        if (served > 0 && served % MiB !== 0) {
          const pid = await _pid(cluster.dir, port);
          Deno.kill(pid, "SIGSTOP");
          stopped.push(pid);
          break;
        }
      }
    }
    assert.equal(stopped.length, 1, "never caught an instance mid-part");
    const result = await fetch.result();
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(dest, "m.bin"), join(cluster.work, "src", "m.bin"));
    const summary = JSON.parse(result.stdout);
    assert.equal(summary.bytesReceived, 4 * MiB, "bytes crossed twice: the part restarted");
    assert.ok(summary.failovers >= 1);
  } finally {
    for (const pid of stopped) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await cluster.stop();
  }
});
