/**
 * Fetching many files in one process (`fts fetch --all | --match |
 * --names-from`): every file arrives byte for byte, a glob picks by name, a
 * file no replica can serve fails alone (named, non-zero exit) while the rest
 * arrive, a batch killed halfway resumes sending only what is missing, and a
 * cluster in etcd works the same.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  damageFile,
  freePortRange,
  FtsProcess,
  newDest,
  readManifestJson,
  runFts,
  startCluster,
  storedPartPath,
  type TestCluster,
  writeRandomFile,
} from "./harness.ts";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { startEtcdHost } from "./etcd_host.ts";
import { missingTool } from "./missing_tool.ts";
import { Peer } from "../lib/client/peer.ts";

const KIB = 1024;
/** Small files between 4 and 64 KiB, as many clusters hold by the thousand. */
function _smallFiles(count: number, prefix = "f"): Record<string, number> {
  const files: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    files[`${prefix}-${String(i).padStart(4, "0")}.bin`] = 4 * KIB + ((i * 7919) % (60 * KIB));
  }
  return files;
}

/** The regular files in `dir`, by name; no helper file may be left. */
async function _listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Requests the cluster's instances have served so far. */
async function _requestsServed(cluster: TestCluster): Promise<number> {
  let total = 0;
  for (const port of cluster.ports) {
    const peer = await Peer.connect(`127.0.0.1:${port}`);
    try {
      total += Number((await peer.stats()).requests);
    } finally {
      peer.close();
    }
  }
  return total;
}

async function _assertAllSame(cluster: TestCluster, dest: string, names: string[]) {
  for (const name of names) {
    await assertSameFile(join(dest, name), join(cluster.work, "src", name));
  }
}

Deno.test("fetch --all: 200 files of 4-64 KiB and 2 of 16 parts arrive byte for byte; --match globs", async () => {
  const files = { ..._smallFiles(200), "big-1.bin": 1024 * KIB, "big-2.bin": 1000 * KIB + 17 };
  const cluster = await startCluster({ servers: 4, replicas: 2, partSize: "64KiB", files });
  try {
    const names = Object.keys(files).sort();
    const dest = await newDest(cluster);
    const requestsBefore = await _requestsServed(cluster);
    const all = await cluster.fts(["fetch", "--all", dest, "--json"]);
    assert.equal(all.code, 0, all.stderr);
    // Entries are looked up many at a time: a request per part (232) and a
    // hello per connection, not a file.get more per file (434 and the hellos).
    const requests = await _requestsServed(cluster) - requestsBefore;
    assert.ok(requests < 380, `${requests} requests for ${names.length} files of 232 parts`);
    const summary = JSON.parse(all.stdout);
    assert.equal(summary.ok, true);
    assert.equal(summary.filesFetched, names.length);
    // Small files are read ahead, many to a request; each counts its bytes once.
    const total = Object.values(files).reduce((a, b) => a + b, 0);
    assert.equal(summary.bytesReceived, total);
    const sizes: Record<string, number> = files;
    for (const file of summary.files as { name: string; bytesReceived: number }[]) {
      assert.equal(file.bytesReceived, sizes[file.name], file.name);
    }
    assert.equal(summary.files.length, names.length);
    const big = summary.files.find((f: { name: string }) => f.name === "big-1.bin");
    assert.equal(big.parts, 16);
    assert.equal(big.partsFetched, 16);
    assert.deepEqual(await _listDir(dest), names);
    await _assertAllSame(cluster, dest, names);

    // Names matching either pattern, and nothing else.
    const picked = await newDest(cluster);
    const glob = await cluster.fts(["fetch", "--match", "f-00?7.bin", "--match", "big-*", picked]);
    assert.equal(glob.code, 0, glob.stderr);
    const expected = names.filter((n) => /^f-00\d7\.bin$/.test(n) || n.startsWith("big-"));
    assert.equal(expected.length, 12);
    assert.deepEqual(await _listDir(picked), expected);
    assert.match(glob.stdout, /fetched 12 of 12 files/);

    // A list of names, one a line; a name the cluster lacks fails alone.
    const listed = await newDest(cluster);
    const list = join(cluster.work, "names.txt");
    // Written by a Windows editor: a byte-order mark first, CRLF line ends.
    await Deno.writeTextFile(list, "\uFEFFf-0001.bin\r\nbig-2.bin\n\nf-0001.bim\n");
    const fromList = await cluster.fts(["fetch", "--names-from", list, listed, "-q"]);
    assert.equal(fromList.code, 1, fromList.stderr);
    assert.match(fromList.stderr, /^fts fetch: f-0001\.bim: No file named .*did you mean/m);
    assert.deepEqual(await _listDir(listed), ["big-2.bin", "f-0001.bin"]);

    // Nothing matches: a failure (as a missing name), and the destination it named is not made.
    const unmade = join(cluster.work, "unmade", "deeper");
    const none = await cluster.fts(["fetch", "--match", "nothing*", unmade]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /No file of the 202 in the cluster matches "nothing\*"/);
    assert.equal(await Deno.lstat(join(cluster.work, "unmade")).catch(() => undefined), undefined);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch --all: every copy of one file's part corrupt; exit 1 naming it, the other 39 arrive", async () => {
  const files = _smallFiles(40);
  const cluster = await startCluster({ servers: 3, replicas: 2, files });
  try {
    const bad = "f-0013.bin";
    const part = (await readManifestJson(cluster.dir)).files[bad]!.parts[0]!;
    for (const id of part.replicas) {
      await damageFile(storedPartPath(cluster.dir, id, part.digest), 100, 8);
    }
    const dest = await newDest(cluster);
    const result = await cluster.fts(["fetch", "--all", dest]);
    assert.equal(result.code, 1, result.stderr);
    const failures = result.stderr.split("\n").filter((line) => line.startsWith("fts fetch: "));
    assert.equal(failures.length, 1, result.stderr);
    assert.match(failures[0]!, /^fts fetch: f-0013\.bin: /);
    assert.match(result.stdout, /fetched 39 of 40 files.*1 failed/);
    const good = Object.keys(files).filter((n) => n !== bad).sort();
    assert.deepEqual(await _listDir(dest), good);
    await _assertAllSame(cluster, dest, good);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch --all: an instance killed mid-batch; every one of 300 small files arrives from the other replicas", async () => {
  const files = _smallFiles(300);
  const cluster = await startCluster({ servers: 4, replicas: 2, files });
  try {
    const names = Object.keys(files).sort();
    const dest = await newDest(cluster);
    // About 10 s at 1 MiB/s: the instance dies with files read ahead and asked of it.
    const fetch = cluster.spawnFetch("--all", dest, ["--limit-rate", "1MiB", "--json"]);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && (await _listDir(dest)).length < 30) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await cluster.kill(cluster.ports[1]!);
    const result = await fetch.result();
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    assert.equal(summary.filesFetched, names.length);
    assert.ok(summary.failovers > 0, `${summary.failovers} failovers`);
    assert.deepEqual(await _listDir(dest), names);
    await _assertAllSame(cluster, dest, names);
    // --quiet drops progress and text, not the JSON document --json asks for.
    const quiet = await cluster.fts(["fetch", "--all", dest, "--json", "--quiet"]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(JSON.parse(quiet.stdout).filesFetched, names.length);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch --all: killed halfway through 60 files, a second run sends only what is missing", async () => {
  const files = _smallFiles(60);
  const cluster = await startCluster({ servers: 3, replicas: 2, files });
  try {
    const names = Object.keys(files).sort();
    const total = Object.values(files).reduce((a, b) => a + b, 0);
    const dest = await newDest(cluster);
    // About 4 s at 512 KiB/s: killed once a third of the files are in place.
    const first = cluster.spawnFetch("--all", dest, ["--limit-rate", "512KiB", "--files", "4"]);
    let done: string[] = [];
    try {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        done = (await _listDir(dest)).filter((n) => n in files);
        if (done.length >= names.length / 3) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      first.kill("SIGKILL");
      await first.status;
    }
    done = (await _listDir(dest)).filter((n) => n in files);
    assert.ok(done.length >= names.length / 3 && done.length < names.length, `${done.length} done`);
    const missingBytes = total - done.reduce((sum, n) => sum + files[n]!, 0);

    const before = await cluster.bytesServed();
    const second = await cluster.fts(["fetch", "--all", dest, "--json"]);
    assert.equal(second.code, 0, second.stderr);
    const sent = await cluster.bytesServed() - before;
    assert.ok(sent <= missingBytes, `sent ${sent} bytes, ${missingBytes} were missing`);
    assert.ok(sent > 0);
    const summary = JSON.parse(second.stdout);
    // Files complete before the kill, and the parts of the partial files.
    assert.ok(summary.bytesPresent >= total - missingBytes, JSON.stringify(summary.bytesPresent));
    assert.deepEqual(await _listDir(dest), names);
    await _assertAllSame(cluster, dest, names);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch --all: Ctrl-C halfway says how many files arrived and that the same command goes on", async () => {
  const files = _smallFiles(30);
  const cluster = await startCluster({ servers: 3, replicas: 2, files });
  try {
    const dest = await newDest(cluster);
    const first = cluster.spawnFetch("--all", dest, ["--limit-rate", "512KiB", "--files", "2"]);
    let done: string[] = [];
    try {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && done.length < 10) {
        done = (await _listDir(dest)).filter((n) => n in files);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      first.kill("SIGINT");
    }
    const result = await first.result();
    assert.equal(result.code, 130, result.stderr);
    const said = /interrupted with (\d+) of 30 files fetched: the same command fetches the rest/
      .exec(result.stderr);
    assert.ok(said, result.stderr);
    const after = (await _listDir(dest)).filter((n) => n in files).length;
    assert.ok(Number(said[1]) >= done.length && Number(said[1]) <= after, `${said[1]}: ${after}`);
    assert.ok(after < 30, "the batch ended before it was interrupted");
  } finally {
    await cluster.stop();
  }
});

Deno.test({
  name: "fetch --all --etcd: 6 files uploaded to a cluster in etcd arrive byte for byte",
  ignore: missingTool("etcd"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fts-batch-etcd-" });
    const etcd = await EtcdProcess.start({});
    let host: FtsProcess | undefined;
    try {
      const flags = ["--etcd", etcd.endpoints, "--cluster", "batch"];
      host = await startEtcdHost({
        flags,
        host: "127.0.0.1",
        servers: 3,
        basePort: freePortRange(3),
        data: join(dir, "host"),
        extra: ["--part-size", "64KiB", "--heal-after", "0"],
      });
      const src = join(dir, "src");
      await Deno.mkdir(src);
      const names: string[] = [];
      for (let i = 0; i < 6; i++) {
        const name = `e-${i}.bin`;
        await writeRandomFile(join(src, name), 4 * KIB + i * 30 * KIB, i + 1);
        names.push(name);
      }
      const id = ["--identity", join(dir, "me.id")];
      for (const name of names) {
        const uploaded = await runFts(["upload", join(src, name), ...flags, ...id, "-q"]);
        assert.equal(uploaded.code, 0, uploaded.stderr);
      }
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const fetched = await runFts(["fetch", "--all", out, ...flags, "-q"]);
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.deepEqual(await _listDir(out), names);
      for (const name of names) await assertSameFile(join(out, name), join(src, name));
    } finally {
      host?.kill("SIGTERM");
      await host?.status;
      await etcd.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("fetch --all: a stalled instance is passed over by every file after the first ones that met it (R=2)", async () => {
  const files = _smallFiles(60, "s");
  const cluster = await startCluster({ servers: 3, replicas: 2, partSize: "64KiB", files });
  const stalled = Number(
    await Deno.readTextFile(join(cluster.dir, "run", `${cluster.ports[0]}.pid`)),
  );
  try {
    Deno.kill(stalled, "SIGSTOP");
    const dest = await newDest(cluster);
    const all = await cluster.fts(
      ["fetch", "--all", dest, "--files", "4", "--timeout", "500ms", "--json"],
    );
    assert.equal(all.code, 0, all.stderr);
    const report = JSON.parse(all.stdout);
    // The files under way when it stalled may fail over; every later file avoids it. With a
    // reader per file, each learned it anew: a third of the files failed over, a timeout each.
    const metIt = report.files.filter((f: { failovers: number }) => f.failovers > 0);
    assert.ok(metIt.length <= 4, `${metIt.length} files failed over`);
    const names = Object.keys(files).sort();
    assert.deepEqual(await _listDir(dest), names);
    await _assertAllSame(cluster, dest, names);
  } finally {
    Deno.kill(stalled, "SIGCONT");
    await cluster.stop();
  }
});

Deno.test("fetch --all: a file its owner replaces before its turn comes is fetched as it is now", async () => {
  const MiB = 1024 * KIB;
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "256KiB",
    files: { "a.bin": 2 * MiB, "b.bin": 2 * MiB, "c.bin": 2 * MiB },
  });
  try {
    const dest = await newDest(cluster);
    const fresh = join(cluster.work, "c-new.bin");
    await writeRandomFile(fresh, 1 * MiB, 77);
    // One file at a time, slowly: every entry is looked up ahead, before c.bin is replaced.
    const fetch = cluster.spawnFetch("--all", dest, [
      "--files",
      "1",
      "--limit-rate",
      "2MiB",
      "--json",
    ]);
    // a.bin is under way (its partial file or itself is there): c.bin's entry is old now.
    const started = () => [...Deno.readDirSync(dest)].some((e) => e.name.startsWith("a.bin"));
    for (const deadline = Date.now() + 30_000; Date.now() < deadline && !started();) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const replaced = await cluster.fts(
      ["upload", fresh, "--as", "c.bin", "--replace", "--operator"],
    );
    assert.equal(replaced.code, 0, replaced.stderr);
    const result = await fetch.result();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).filesFetched, 3);
    await assertSameFile(join(dest, "c.bin"), fresh);
  } finally {
    await cluster.stop();
  }
});
