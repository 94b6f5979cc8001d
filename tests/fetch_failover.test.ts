import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  instanceStats,
  newDest,
  readManifestJson,
  startCluster,
  waitForVerifiedParts,
} from "./harness.ts";

const MiB = 1024 * 1024;

/** Instances whose bytesServed moved between two looks: the ones streaming right now. */
async function _streaming(alive: Set<number>): Promise<number[]> {
  const look = async () =>
    new Map(
      await Promise.all(
        [...alive].map(async (port) => {
          try {
            return [port, (await instanceStats(`127.0.0.1:${port}`)).bytesServed ?? 0] as const;
          } catch {
            return [port, -1] as const;
          }
        }),
      ),
    );
  const before = await look();
  await new Promise((r) => setTimeout(r, 150));
  const after = await look();
  return [...alive].filter((port) => (after.get(port) ?? -1) > (before.get(port) ?? -1));
}

Deno.test("fetch: failover: serving instances SIGKILLed mid-part (6 servers, R=3, 2 killed)", async () => {
  // Each instance sends at most 1 MiB/s, so a 1 MiB part takes about a second
  // and a kill lands inside a part, not between parts. The test kills through
  // the pid file (as `fts kill` does) to avoid a process start between look and kill.
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    partSize: "1MiB",
    files: { "movie.bin": 8 * MiB },
    clusterArgs: ["--limit-rate", "1MiB"],
  });
  try {
    const dest = await newDest(cluster);
    const fetch = cluster.spawnFetch("movie.bin", dest, ["--json", "--parallel", "2"]);
    const alive = new Set(cluster.ports);
    const killed: number[] = [];
    const deadline = Date.now() + 20_000;
    while (killed.length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      for (const port of await _streaming(alive)) {
        if (killed.length >= 2) break;
        const pid = Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)));
        Deno.kill(pid, "SIGKILL");
        alive.delete(port);
        killed.push(port);
      }
    }
    assert.equal(killed.length, 2, "never saw two instances streaming");
    const result = await fetch.result();
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(dest, "movie.bin"), join(cluster.work, "src", "movie.bin"));
    const summary = JSON.parse(result.stdout);
    assert.ok(summary.failovers >= 1, `expected failovers, got ${result.stdout}`);
    const events = result.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) =>
      JSON.parse(l)
    );
    const midPart = events.filter((e) =>
      e.type === "failover" && e.at > 0 && killed.includes(Number(e.from))
    );
    assert.ok(midPart.length >= 1, `no failover mid-part from a killed instance: ${result.stderr}`);
    // Continuing from the byte reached means no byte crossed the network twice.
    assert.equal(summary.bytesReceived, 8 * MiB);
    assert.equal(summary.digestMismatches, 0);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: failover: R-1 replicas of every part down before the fetch (6 servers, R=3, 2 down)", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "a.bin": 5 * MiB + 777 },
  });
  try {
    await cluster.kill(cluster.ports[0]!);
    await cluster.kill(cluster.ports[3]!);
    const dest = await newDest(cluster);
    const result = await cluster.fts(["fetch", "a.bin", dest]);
    assert.equal(result.code, 0, result.stderr);
    await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: failover: every replica of a part down fails fast naming the part, then resumes after start", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "a.bin": 4 * MiB },
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    const entry = manifest.files["a.bin"]!;
    const target = 5;
    const holders = entry.parts[target]!.replicas.map(Number);
    for (const port of holders) await cluster.kill(port);
    const dest = await newDest(cluster);
    const started = Date.now();
    const failed = await cluster.fts(["fetch", "a.bin", dest], { env: {} });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, new RegExp(`part ${target}\\b`));
    assert.match(failed.stderr, /all 3 replicas failed/);
    // "Within seconds": a hang guard, generous for a loaded machine.
    assert.ok(Date.now() - started < 30_000, "took too long to give up");
    // The partial download and its control file stay for the resume.
    const names = [...Deno.readDirSync(dest)].map((e) => e.name).sort();
    assert.deepEqual(names, ["a.bin.fts-partial", "a.bin.fts-state"]);

    for (const port of holders) await cluster.start(port);
    const resumed = await cluster.fts(["fetch", "a.bin", dest, "--json"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));
    const summary = JSON.parse(resumed.stdout);
    assert.ok(summary.partsPresent > 0, `expected a resume, got ${resumed.stdout}`);
    assert.equal(summary.partsPresent + summary.partsFetched, entry.parts.length);
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["a.bin"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: Ctrl-C before any part is whole keeps nothing, and says so", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    partSize: "1MiB",
    files: { "slow.bin": 4 * MiB },
    clusterArgs: ["--limit-rate", "256KiB"],
  });
  try {
    const dest = await newDest(cluster);
    const fetch = cluster.spawnFetch("slow.bin", dest, ["--timeout", "60s"]);
    // Its partial file is there, bytes arrive; a part takes 4 s at this rate.
    const partial = join(dest, "slow.bin.fts-partial");
    while (!(await Deno.stat(partial).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 10));
    }
    fetch.kill("SIGINT");
    const result = await fetch.result();
    assert.equal(result.code, 130, result.stderr);
    assert.match(
      result.stderr,
      /interrupted with none of 4 parts whole: nothing kept, the same command starts over/,
    );
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), []);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: Ctrl-C ends a fetch at once while every instance it reads from has stalled", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 1,
    partSize: "1MiB",
    files: { "slow.bin": 8 * MiB },
    clusterArgs: ["--limit-rate", "1MiB"],
  });
  const pids = await Promise.all(
    cluster.ports.map(async (port) =>
      Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)))
    ),
  );
  try {
    const dest = await newDest(cluster);
    const fetch = cluster.spawnFetch("slow.bin", dest, ["--timeout", "60s"]);
    // Reading parts (a first one in place), then every instance stops answering.
    await waitForVerifiedParts(join(dest, "slow.bin.fts-state"), 1);
    for (const pid of pids) Deno.kill(pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 1_000));
    const interrupted = Date.now();
    fetch.kill("SIGINT");
    const result = await fetch.result();
    const took = Date.now() - interrupted;
    assert.equal(result.code, 130, result.stderr);
    // Says what it kept (at least the part seen verified above), not only "interrupted".
    const kept = /interrupted with (\d+) of 8 parts verified and kept: the same command resumes/
      .exec(result.stderr);
    assert.ok(kept && Number(kept[1]) >= 1, result.stderr);
    // Within the --timeout of 60 s it would otherwise wait out: a hang guard.
    assert.ok(took < 10_000, `took ${took} ms to stop after Ctrl-C`);
  } finally {
    for (const pid of pids) Deno.kill(pid, "SIGCONT");
    await cluster.stop();
  }
});
