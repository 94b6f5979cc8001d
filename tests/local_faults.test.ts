/**
 * Local faults: the client's disk fills up, the client is killed at various
 * points, an instance is killed while it receives a part, the instances'
 * disks are full, a disk is mounted where parts cannot be renamed into it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { encodeFrame, encodeFrameHead, PROTOCOL_VERSION } from "../lib/wire/frame.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import {
  assertSameFile,
  freePortRange,
  FtsProcess,
  instanceStats,
  runFts,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import { unusableTool } from "./missing_tool.ts";
import { clusterIdAt, partSigner, signedPutHeader } from "./part_signer.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

async function _run(command: string, args: string[]): Promise<{ ok: boolean; stderr: string }> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, stderr: new TextDecoder().decode(out.stderr) };
  } catch (error) {
    return { ok: false, stderr: String(error) };
  }
}

/** Whether this process may mount a tmpfs: root may, other users are refused. */
async function _canMountTmpfs(): Promise<boolean> {
  const dir = await Deno.makeTempDir({ prefix: "fts-mount-probe-" });
  try {
    if (!(await _run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir])).ok) return false;
    return (await _run("umount", [dir])).ok;
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

const NO_TMPFS = await unusableTool("mount", _canMountTmpfs, "mounting a tmpfs needs root");

/** Deno.test for a test that mounts a tmpfs: ignored where this process may not. */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: NO_TMPFS, fn });
}

test("local: destination disk fills up (2MiB tmpfs): clear error, resumes once space is freed", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "big.bin": 4 * MiB } });
  const small = join(cluster.work, "small-disk");
  await Deno.mkdir(small);
  const mounted = await _run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", small]);
  try {
    assert.ok(mounted.ok, `cannot mount a 2MiB tmpfs here: ${mounted.stderr.trim()}`);
    const full = await cluster.fts(["fetch", "big.bin", small]);
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /No space left on device|disk is full/);
    // What did arrive stays, for the resume.
    assert.ok((await Deno.stat(join(small, "big.bin.fts-partial"))).isFile);

    const grown = await _run("mount", ["-o", "remount,size=16m", small]);
    assert.ok(grown.ok, grown.stderr);
    const resumed = await cluster.fts(["fetch", "big.bin", small, "--json"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    await assertSameFile(join(small, "big.bin"), join(cluster.work, "src", "big.bin"));
    const summary = JSON.parse(resumed.stdout);
    assert.ok(summary.partsPresent > 0, `nothing was resumed: ${resumed.stdout}`);
    assert.ok(summary.bytesReceived < 4 * MiB, `everything was fetched again: ${resumed.stdout}`);
    assert.deepEqual([...Deno.readDirSync(small)].map((e) => e.name), ["big.bin"]);
  } finally {
    if (mounted.ok) await _run("umount", [small]);
    await cluster.stop();
  }
});

Deno.test("local: a client killed at several points resumes byte-identical", async () => {
  // The client is throttled to 1MiB/s so that the kills land mid-transfer.
  const size = 4 * MiB + 4321;
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "f.bin": size } });
  try {
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const source = join(cluster.work, "src", "f.bin");
    // Kill points: before it found the file, early, mid-way, late; SIGKILL
    // (no cleanup at all) and SIGINT (the client's own interrupt path).
    const kills: { afterMs: number; signal: Deno.Signal; extra?: string[] }[] = [
      { afterMs: 50, signal: "SIGKILL" },
      { afterMs: 700, signal: "SIGKILL" },
      { afterMs: 1_200, signal: "SIGINT" },
      { afterMs: 1_500, signal: "SIGKILL" },
      // A resume that re-hashes the destination (--verify), killed while checking.
      { afterMs: 150, signal: "SIGKILL", extra: ["--verify"] },
    ];
    for (const { afterMs, signal, extra } of kills) {
      const fetch = cluster.spawnFetch("f.bin", dest, ["--limit-rate", "1MiB", ...(extra ?? [])]);
      await new Promise((resolve) => setTimeout(resolve, afterMs));
      fetch.kill(signal);
      const result = await fetch.result();
      if (result.code === 0) break; // Finished before the kill: nothing left to resume.
      // Never a partial file under the final name.
      if (await _exists(join(dest, "f.bin"))) await assertSameFile(join(dest, "f.bin"), source);
    }
    const final = await cluster.fts(["fetch", "f.bin", dest, "--json"]);
    assert.equal(final.code, 0, final.stderr);
    await assertSameFile(join(dest, "f.bin"), source);
    assert.ok(JSON.parse(final.stdout).partsPresent > 0, "the final run did not resume");
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["f.bin"]);
  } finally {
    await cluster.stop();
  }
});

async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("local: an instance killed while receiving a part (part.put) never serves it", async () => {
  const cluster = await startDirectCluster({ servers: 2, replicas: 1, files: { "x.bin": 5000 } });
  try {
    const port = cluster.ports[0]!;
    const part = crypto.getRandomValues(new Uint8Array(64 * KiB));
    const big = new Uint8Array(MiB);
    for (let at = 0; at < big.length; at += part.length) big.set(part, at);
    const digest = createHash("sha256").update(big).digest("hex");
    const tmpDir = join(cluster.dir, "instances", String(port), "tmp");

    // Half the part goes out, then the instance dies with the temp file open.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const hello = encodeFrame({ op: "hello", version: PROTOCOL_VERSION });
    await _writeAll(conn, hello);
    const cluster0 = await clusterIdAt(`127.0.0.1:${port}`);
    await _writeAll(
      conn,
      encodeFrameHead(await signedPutHeader(digest, big.length, cluster0), big.length),
    );
    await _writeAll(conn, big.subarray(0, big.length / 2));
    const deadline = Date.now() + 10_000;
    while ([...Deno.readDirSync(tmpDir)].length === 0) {
      assert.ok(Date.now() < deadline, "the instance never started writing the part");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await cluster.killInstance(0);
    try {
      conn.close();
    } catch { /* reset */ }

    // Back up: the half-written temp is gone and the part is not served.
    await cluster.startInstance(0);
    assert.deepEqual([...Deno.readDirSync(tmpDir)], [], "the temp file outlived the restart");
    await assert.rejects(Deno.lstat(storedPartPath(cluster.dir, String(port), digest)));
    const again = await Peer.connect(`127.0.0.1:${port}`);
    try {
      assert.equal(await again.hasPart(digest), undefined);
      await assert.rejects(again.requestPart(digest, 0, 1), /not stored here/);
      // The same part sent whole is stored and served.
      assert.deepEqual(
        await again.putPart(
          digest,
          big.length,
          (async function* () {
            yield big;
          })(),
          await partSigner(again),
        ),
        { stored: true },
      );
      await again.requestPart(digest, 0, big.length);
      const got = new Uint8Array(big.length);
      let done = 0;
      while (done < got.length) done += await again.reader.readBody(got.subarray(done));
      assert.equal(createHash("sha256").update(got).digest("hex"), digest);
    } finally {
      again.close();
    }

    // The client dying mid-part instead: the instance drops the temp and carries on.
    const quitter = await Deno.connect({ hostname: "127.0.0.1", port });
    const other = new Uint8Array(MiB).fill(7);
    const otherDigest = createHash("sha256").update(other).digest("hex");
    await _writeAll(quitter, hello);
    await _writeAll(
      quitter,
      encodeFrameHead(await signedPutHeader(otherDigest, other.length, cluster0), other.length),
    );
    await _writeAll(quitter, other.subarray(0, other.length / 4));
    quitter.close();
    const settle = Date.now() + 10_000;
    while ([...Deno.readDirSync(tmpDir)].length > 0) {
      assert.ok(Date.now() < settle, "the temp file of an abandoned part.put stayed");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const check = await Peer.connect(`127.0.0.1:${port}`);
    try {
      assert.equal(await check.hasPart(otherDigest), undefined);
    } finally {
      check.close();
    }
  } finally {
    await cluster.stop();
  }
});

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
}

test("local: every instance's disk full (64KiB tmpfs under its store): upload says which disk is full, not 'Internal server error'", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 2,
    partSize: "256KiB",
    files: { "seed.bin": 1000 },
  });
  const mounts = cluster.ports.map((port) => join(cluster.dir, "instances", String(port), "tmp"));
  try {
    for (const dir of mounts) {
      const mounted = await _run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]);
      assert.ok(mounted.ok, `cannot mount a 64KiB tmpfs here: ${mounted.stderr.trim()}`);
    }
    const source = join(cluster.work, "src", "big.bin");
    await writeRandomFile(source, 512 * KiB, 7);
    const upload = await cluster.fts(["upload", source]);
    assert.equal(upload.code, 1, upload.stderr);
    assert.doesNotMatch(upload.stderr, /Internal server error|is the cluster running/);
    // The closing line (after one failover line per attempt) says which disk and what to do.
    const last = upload.stderr.trim().split("\n").at(-1)!;
    assert.match(
      last,
      /^fts upload: Cannot store part \d of "big\.bin": .*answered: Instance \d+ cannot write: the disk holding \S+ is full \(No space left on device.*\); free space on that disk/,
    );
  } finally {
    for (const dir of mounts) await _run("umount", ["-l", dir]);
    await cluster.stop();
  }
});

test("local: a disk mounted at an instance's parts directory alone: it serves what it has, says it can store nothing, and refuses uploads at once", async () => {
  const work = await Deno.makeTempDir({ prefix: "fts-test-split-" });
  const data = join(work, "data");
  const source = join(work, "a.bin");
  await writeRandomFile(source, 1000, 3);
  const port = freePortRange(1);
  const setup = ["--data", data, "--servers", "1", "--replicas", "1", "--base-port", String(port)];
  const preload = await runFts(["preload", source, ...setup]);
  assert.equal(preload.code, 0, preload.stderr);
  const parts = join(data, "instances", String(port), "parts");
  // The disk holds what was there: a.bin's part stays readable.
  const saved = join(work, "parts-before");
  await _run("cp", ["-a", parts, saved]);
  const mounted = await _run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", parts]);
  let serve: FtsProcess | undefined;
  try {
    assert.ok(mounted.ok, `cannot mount a tmpfs here: ${mounted.stderr.trim()}`);
    assert.ok((await _run("cp", ["-a", `${saved}/.`, parts])).ok);
    serve = new FtsProcess(["serve", "--port", String(port), "--data", data]);
    await serve.waitFor(/ready/);
    // Before, it looked healthy, and every part.put failed renaming across file systems.
    const stats = await instanceStats(`127.0.0.1:${port}`);
    assert.match(String(stats.storeError), /not on one file system, so no part can be stored/);
    const dest = join(work, "dest");
    await Deno.mkdir(dest);
    const fetch = await runFts(["fetch", "a.bin", dest, "--data", data]);
    assert.equal(fetch.code, 0, fetch.stderr);
    await assertSameFile(join(dest, "a.bin"), source);
    const other = join(work, "b.bin");
    await writeRandomFile(other, 1000, 4);
    const upload = await runFts(["upload", other, "--data", data]);
    assert.equal(upload.code, 1, upload.stderr);
    assert.match(
      upload.stderr,
      new RegExp(`mount the disk at ${join(data, "instances", String(port))} instead`),
    );
  } finally {
    serve?.kill("SIGTERM");
    await serve?.status;
    if (mounted.ok) await _run("umount", ["-l", parts]);
    await Deno.remove(work, { recursive: true });
  }
});
