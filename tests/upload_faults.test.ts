import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { rankInstances } from "../lib/state/placement.ts";
import {
  assertSameFile,
  damageFile,
  FtsProcess,
  readManifestJson,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import { assertVerifiedCopies, sumCounter, testUser, waitUntil } from "./upload_util.ts";

const PART = 64 * 1024;

/** The digests of a file's parts, as the uploader will compute them. */
async function _partDigests(path: string, partSize: number): Promise<string[]> {
  const bytes = await Deno.readFile(path);
  const digests: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += partSize) {
    digests.push(
      createHash("sha256").update(bytes.subarray(offset, offset + partSize)).digest("hex"),
    );
  }
  return digests;
}

Deno.test("upload: faults: instances killed mid-upload (8 servers, R=3, 2 killed), then too few left (2 of R=3 up)", async (t) => {
  const cluster = await startCluster({
    servers: 8,
    replicas: 3,
    partSize: "64KiB",
    files: { "op.bin": 10_000 },
  });
  const alice = testUser(cluster, "alice");
  const src = join(cluster.work, "src");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  const ids = cluster.ports.map(String);
  const killed = new Set<string>();
  try {
    await t.step(
      "killed mid-upload: the upload completes with R verified copies on live instances",
      async () => {
        const parts = 16;
        const path = join(src, "a.bin");
        await writeRandomFile(path, parts * PART, 31);
        // Kill the instances ranked first for the last parts: those parts must fail over.
        const digests = await _partDigests(path, PART);
        for (const digest of digests.slice(-4)) {
          const top = rankInstances(digest, ids)[0]!;
          if (killed.size < 2) killed.add(top);
        }
        if (killed.size < 2) killed.add(ids.find((id) => !killed.has(id))!);
        const storedBefore = await sumCounter(cluster, "partsStored");
        const upload = new FtsProcess(
          ["upload", path, "--limit-rate", "768KiB", "--parallel", "2", "--data", cluster.dir],
          { env: alice.env },
        );
        await waitUntil(
          "a quarter of the copies are stored",
          async () => (await sumCounter(cluster, "partsStored")) - storedBefore >= parts * 3 / 4,
        );
        for (const id of killed) await cluster.kill(Number(id));
        const result = await upload.result();
        // Six instances stay up, enough for R=3: the upload must complete, around the dead ones.
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, /failover: instance/);
        await assertVerifiedCopies(cluster, "a.bin", 3, killed);
        const fetched = await cluster.fts(["fetch", "a.bin", dest]);
        assert.equal(fetched.code, 0, fetched.stderr);
        await assertSameFile(join(dest, "a.bin"), path);
      },
    );

    await t.step("fewer live instances than R: a clear error, nothing published", async () => {
      const alive = ids.filter((id) => !killed.has(id));
      for (const id of alive.slice(2)) {
        await cluster.kill(Number(id));
        killed.add(id);
      }
      const path = join(src, "b.bin");
      await writeRandomFile(path, 3 * PART, 32);
      const before = await readManifestJson(cluster.dir);
      const result = await cluster.fts(["upload", path], { env: alice.env });
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        /Cannot store part \d+ of "b\.bin": only [0-2] of 3 copies on live instances/,
      );
      assert.deepEqual(await readManifestJson(cluster.dir), before);
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: an instance that failed earlier and was restarted takes copies again when too few are left (4 servers, R=3)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 3,
    partSize: "64KiB",
    files: { "op.bin": 10_000 },
    clusterArgs: ["--heal-after", "0"],
  });
  const alice = testUser(cluster, "alice");
  try {
    const parts = 16;
    const path = join(cluster.work, "src", "back.bin");
    await writeRandomFile(path, parts * PART, 41);
    const ids = cluster.ports.map(String);
    // Down from the start, so the upload fails over from it at its first part placed there.
    const back = ids[0]!;
    const other = ids[1]!;
    await cluster.kill(Number(back));
    const upload = new FtsProcess(
      [
        "upload",
        path,
        "--limit-rate",
        "512KiB",
        "--parallel",
        "1",
        "--timeout",
        "60s",
        "--data",
        cluster.dir,
      ],
      { env: alice.env },
    );
    await upload.waitFor(new RegExp(`failover: instance ${back} \\(part \\d+\\)`), 60_000);
    // Frozen while `back` returns and `other` goes: then only `back` makes a third live
    // instance, and the upload must ask it again.
    Deno.kill(upload.pid, "SIGSTOP");
    try {
      await cluster.start(Number(back));
      await cluster.kill(Number(other));
    } finally {
      Deno.kill(upload.pid, "SIGCONT");
    }
    const result = await upload.result();
    assert.equal(result.code, 0, result.stderr);
    await assertVerifiedCopies(cluster, "back.bin", 3, new Set([other]));
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: a file rewritten, deleted or bigger than its size while it is read is not published; Ctrl-C stops a slow one at once", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "64KiB",
    files: { "op.bin": 10_000 },
    clusterArgs: ["--heal-after", "0"],
  });
  const alice = testUser(cluster, "alice");
  const slowUpload = (path: string, rate: string) =>
    new FtsProcess(
      ["upload", path, "--limit-rate", rate, "--parallel", "1", "--data", cluster.dir],
      { env: alice.env },
    );
  try {
    // Its first part rewritten after it was sent: the published file would be two versions.
    const changed = join(cluster.work, "src", "changed.bin");
    await writeRandomFile(changed, 16 * PART, 51);
    const upload = slowUpload(changed, "256KiB");
    // 1 MiB at 256 KiB/s: the first part is sent after a second, the rest still to come.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const file = await Deno.open(changed, { write: true });
    await file.write(new Uint8Array(100).fill(7));
    file.close();
    const result = await upload.result();
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /changed\.bin was modified while it was being read/);

    // Deleted midway: said once as this file's trouble, no instance blamed.
    const deleted = join(cluster.work, "src", "deleted.bin");
    await writeRandomFile(deleted, 16 * PART, 52);
    const gone = slowUpload(deleted, "256KiB");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await Deno.remove(deleted);
    const goneResult = await gone.result();
    assert.equal(goneResult.code, 1, goneResult.stderr);
    assert.doesNotMatch(goneResult.stderr, /failover/);
    assert.match(goneResult.stderr, /went away while it was being uploaded \(No such file/);

    // A file that holds more than its size says.
    const proc = await cluster.fts(["upload", "/proc/self/status", "--as", "status.txt"], {
      env: alice.env,
    });
    assert.equal(proc.code, 1, proc.stderr);
    assert.match(proc.stderr, /holds more bytes than its size says/);
    const preloaded = await cluster.fts(["preload", "/proc/self/status", "--as", "status.txt"]);
    assert.equal(preloaded.code, 1, preloaded.stderr);
    assert.match(preloaded.stderr, /holds more bytes than its size says/);
    const names = Object.keys((await readManifestJson(cluster.dir)).files);
    assert.deepEqual(names, ["op.bin"], "a changed file was published");

    // Ctrl-C under a low --limit-rate: out at once, not after the limiter's wait.
    const slow = join(cluster.work, "src", "slow.bin");
    await writeRandomFile(slow, 4 * PART, 53);
    const crawling = slowUpload(slow, "1KiB");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const interrupted = Date.now();
    Deno.kill(crawling.pid, "SIGINT");
    const stopped = await crawling.result();
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.ok(Date.now() - interrupted < 5_000, `took ${Date.now() - interrupted} ms`);
    assert.match(
      stopped.stderr,
      /interrupted with 0 of 4 parts stored, not published: the same command sends only the rest/,
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: --limit-rate 2KiB over 2 streams (R=2) finishes: each stream sends often enough for its instance", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "32KiB",
    files: { "op.bin": 10_000 },
    clusterArgs: ["--heal-after", "0"],
  });
  const alice = testUser(cluster, "alice");
  try {
    const path = join(cluster.work, "src", "trickle.bin");
    // One part, two copies at once: in 16 KiB chunks at 2 KiB/s, a copy's second chunk came 16 s
    // after its first, past the 10 s an instance waits for the rest of a part.
    await writeRandomFile(path, 32 * 1024, 61);
    const upload = await cluster.fts(
      ["upload", path, "--limit-rate", "2KiB", "--parallel", "1", "-q"],
      { env: alice.env },
    );
    assert.equal(upload.code, 0, upload.stderr);
    assert.doesNotMatch(upload.stderr, /failover/);
    await assertVerifiedCopies(cluster, "trickle.bin", 2);
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: a rotten copy of a part already stored is sent again, not published (signed part.has re-hashes)", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 2,
    partSize: "64KiB",
    files: { "op.bin": 10_000 },
    clusterArgs: ["--heal-after", "0"],
  });
  const alice = testUser(cluster, "alice");
  try {
    const path = join(cluster.work, "src", "a.bin");
    await writeRandomFile(path, 3 * PART, 67);
    const first = await cluster.fts(["upload", path, "-q"], { env: alice.env });
    assert.equal(first.code, 0, first.stderr);
    // Both instances hold every part; one copy rots in place, its size unchanged.
    const part = (await readManifestJson(cluster.dir)).files["a.bin"]!.parts[1]!;
    const rotten = part.replicas[0]!;
    const stored = storedPartPath(cluster.dir, rotten, part.digest);
    await damageFile(stored, 1000, 16);

    const again = await cluster.fts(["upload", path, "--as", "b.bin", "--json"], {
      env: alice.env,
    });
    assert.equal(again.code, 0, again.stderr);
    const result = JSON.parse(again.stdout);
    assert.equal(result.copiesPresent, 3 * 2 - 1);
    assert.equal(result.copiesSent, 1);
    // The rotten copy went to quarantine and the body took its place: both names have good copies.
    const quarantined = join(cluster.dir, "instances", rotten, "quarantine", part.digest);
    assert.ok((await Deno.stat(quarantined)).isFile);
    await assertVerifiedCopies(cluster, "b.bin", 2);
    await assertVerifiedCopies(cluster, "a.bin", 2);
  } finally {
    await cluster.stop();
  }
});
