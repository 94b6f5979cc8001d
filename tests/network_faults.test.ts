/**
 * Network faults between clients and instances: a FaultProxy in front of every
 * instance (see direct_cluster.ts for how clients end up talking to proxies).
 * Fetch and upload must complete byte-identical through every fault that
 * leaves each part one good replica, and fail clearly, never hang, past that.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type DirectCluster, startDirectCluster } from "./direct_cluster.ts";
import { type Fault, type FaultProxy } from "./fault_proxy.ts";
import { assertSameFile, type RunResult, writeRandomFile } from "./harness.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const FILE = "movie.bin";
const FILE_BYTES = 3 * MiB + 1234;
/** Every run is killed after this: a hang fails the test instead of stalling the suite. */
const RUN_TIMEOUT_MS = 90_000;

function _setFaults(proxies: FaultProxy[], fault: Fault): void {
  for (const proxy of proxies) proxy.fault = { ...fault };
}

function _sum(proxies: FaultProxy[], counter: keyof FaultProxy["counters"]): number {
  return proxies.reduce((total, proxy) => total + proxy.counters[counter], 0);
}

async function _newDest(cluster: DirectCluster): Promise<string> {
  const dest = join(cluster.work, `dest-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dest);
  return dest;
}

function _notKilled(result: RunResult): void {
  // 137: the run timeout's SIGKILL, i.e. the client hung.
  assert.notEqual(result.code, 137, `the client hung:\n${result.stderr}`);
}

/** Fetches FILE into a new directory and checks it byte for byte. */
async function _fetchOk(
  cluster: DirectCluster,
  extra: string[] = [],
  timeout = "2s",
): Promise<unknown> {
  const dest = await _newDest(cluster);
  const result = await cluster.fts(
    ["fetch", FILE, dest, "--json", "--timeout", timeout, ...extra],
    { timeoutMs: RUN_TIMEOUT_MS },
  );
  _notKilled(result);
  assert.equal(result.code, 0, result.stderr);
  await assertSameFile(join(dest, FILE), cluster.source(FILE));
  return JSON.parse(result.stdout);
}

/** Uploads a new file under the current faults, then fetches it back and compares. */
async function _uploadOk(
  cluster: DirectCluster,
  name: string,
  seed: number,
  timeout = "2s",
): Promise<void> {
  const path = join(cluster.work, name);
  await writeRandomFile(path, MiB + 4321, seed);
  const upload = await cluster.fts(
    ["upload", path, "--as", name, "--operator", "--timeout", timeout, "--json"],
    { timeoutMs: RUN_TIMEOUT_MS },
  );
  _notKilled(upload);
  assert.equal(upload.code, 0, upload.stderr);
  const dest = await _newDest(cluster);
  const fetched = await cluster.fts(["fetch", name, dest, "--timeout", timeout], {
    timeoutMs: RUN_TIMEOUT_MS,
  });
  assert.equal(fetched.code, 0, fetched.stderr);
  await assertSameFile(join(dest, name), path);
}

/**
 * Two proxies to fault such that every part keeps a good replica (R=3), one of
 * them the first choice for part 0: with --parallel 1 the fault surely fires.
 */
function _twoFaulty(cluster: DirectCluster, holders: number[][]): FaultProxy[] {
  const first = holders[0]![0]!;
  const second = holders.flat().find((port) => port !== first)!;
  return cluster.proxies.filter((proxy) => proxy.port === first || proxy.port === second);
}

Deno.test({
  name: "network faults: 6 instances behind fault proxies (R=3, 256KiB parts)",
  // The proxies live in this process across steps; each step checks its own results.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const cluster = await startDirectCluster({
      servers: 6,
      replicas: 3,
      partSize: "256KiB",
      files: { [FILE]: FILE_BYTES },
      proxies: true,
    });
    try {
      const holders = await cluster.holders(FILE);
      const faulty = _twoFaulty(cluster, holders);

      await t.step("network: latency 50ms", async () => {
        _setFaults(cluster.proxies, { latencyMs: 50 });
        const before = _sum(cluster.proxies, "bytesDown");
        await _fetchOk(cluster);
        assert.ok(_sum(cluster.proxies, "bytesDown") - before >= FILE_BYTES, "not via proxies");
        await _uploadOk(cluster, "latency.bin", 101);
      });

      await t.step("network: bandwidth throttled to 512KiB/s per connection", async () => {
        _setFaults(cluster.proxies, { bytesPerSecond: 512 * KiB });
        await _fetchOk(cluster);
        await _uploadOk(cluster, "throttled.bin", 102);
      });

      await t.step("network: connection cut after 100KiB (2 of 6 instances)", async () => {
        _setFaults(cluster.proxies, {});
        _setFaults(faulty, { cutAfterBytes: 100 * KiB });
        const summary = await _fetchOk(cluster, ["--parallel", "1"]) as { failovers: number };
        assert.ok(_sum(faulty, "cuts") > 0, "no connection was cut");
        assert.ok(summary.failovers > 0, "no failover after a cut");
        await _uploadOk(cluster, "cut.bin", 103);
      });

      await t.step("network: connection reset mid-part (2 of 6 instances)", async () => {
        _setFaults(cluster.proxies, {});
        _setFaults(faulty, { resetAfterBytes: 100 * KiB });
        const summary = await _fetchOk(cluster, ["--parallel", "1"]) as { failovers: number };
        assert.ok(_sum(faulty, "resets") > 0, "no connection was reset");
        assert.ok(summary.failovers > 0, "no failover after a reset");
        await _uploadOk(cluster, "reset.bin", 104);
      });

      await t.step("network: blackhole (2 of 6 instances)", async () => {
        _setFaults(cluster.proxies, {});
        _setFaults(faulty, { blackhole: true });
        // A blackholed replica costs a stall timeout each time: keep it short.
        const summary = await _fetchOk(cluster, ["--parallel", "1"], "1s") as {
          failovers: number;
        };
        assert.ok(_sum(faulty, "blackholed") > 0, "nothing went into the blackhole");
        assert.ok(summary.failovers > 0, "no failover from a blackholed replica");
        await _uploadOk(cluster, "blackhole.bin", 105, "1s");
      });

      await t.step("network: latency, throttle and cuts at once (2 of 6 cut)", async () => {
        _setFaults(cluster.proxies, { latencyMs: 20, bytesPerSecond: 1 * MiB });
        _setFaults(faulty, { latencyMs: 20, bytesPerSecond: 1 * MiB, cutAfterBytes: 150 * KiB });
        await _fetchOk(cluster);
        await _uploadOk(cluster, "mixed.bin", 106);
      });

      await t.step(
        "network: every replica of a part reset mid-part fails clearly, then resumes",
        async () => {
          _setFaults(cluster.proxies, {});
          const bad = new Set(holders[3]!);
          const badProxies = cluster.proxies.filter((proxy) => bad.has(proxy.port));
          // Failover resumes at the byte reached, so the faults must leave
          // less than a part over all tries: 3 replicas x 2 tries x 4KiB.
          _setFaults(badProxies, { resetAfterBytes: 4 * KiB });
          // The lowest part whose replicas are all faulty is the one named.
          const doomed = holders.findIndex((replicas) => replicas.every((p) => bad.has(p)));
          const dest = await _newDest(cluster);
          const failed = await cluster.fts(["fetch", FILE, dest, "--timeout", "2s"], {
            timeoutMs: RUN_TIMEOUT_MS,
          });
          _notKilled(failed);
          assert.equal(failed.code, 1, failed.stderr);
          assert.match(
            failed.stderr,
            new RegExp(`Cannot fetch part ${doomed} of "${FILE}": all 3 replicas failed`),
          );
          assert.ok(_sum(badProxies, "resets") > 0);
          const names = [...Deno.readDirSync(dest)].map((e) => e.name).sort();
          assert.deepEqual(names, [`${FILE}.fts-partial`, `${FILE}.fts-state`]);

          _setFaults(cluster.proxies, {});
          const resumed = await cluster.fts(["fetch", FILE, dest, "--json"], {
            timeoutMs: RUN_TIMEOUT_MS,
          });
          assert.equal(resumed.code, 0, resumed.stderr);
          await assertSameFile(join(dest, FILE), cluster.source(FILE));
          assert.ok(JSON.parse(resumed.stdout).partsPresent > 0, "the fetch did not resume");
        },
      );

      await t.step("network: every instance blackholed fails clearly, never hangs", async () => {
        _setFaults(cluster.proxies, { blackhole: true });
        const dest = await _newDest(cluster);
        const fetched = await cluster.fts(["fetch", FILE, dest, "--timeout", "1s"], {
          timeoutMs: RUN_TIMEOUT_MS,
        });
        _notKilled(fetched);
        assert.equal(fetched.code, 1, fetched.stderr);
        assert.match(fetched.stderr, /Cannot reach any\b.*\b6\b/);

        const path = join(cluster.work, "nowhere.bin");
        await writeRandomFile(path, 100 * KiB, 107);
        const uploaded = await cluster.fts(
          ["upload", path, "--operator", "--timeout", "1s"],
          { timeoutMs: RUN_TIMEOUT_MS },
        );
        _notKilled(uploaded);
        assert.equal(uploaded.code, 1, uploaded.stderr);
        assert.match(uploaded.stderr, /Cannot|reach|no live/i);
      });
    } finally {
      _setFaults(cluster.proxies, {});
      await cluster.stop();
    }
  },
});
