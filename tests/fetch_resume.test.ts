import assert from "node:assert/strict";
import { join } from "node:path";
import { type FetchEvent, fetchFile, type FetchProgress } from "../lib/client/fetch.ts";
import { fileStamp } from "../lib/client/fetch_state.ts";
import {
  assertSameFile,
  damageFile,
  editManifestEntry,
  fetchJson,
  newDest,
  readManifestJson,
  sha256File,
  startCluster,
  waitForVerifiedParts,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1024 * 1024;
const PART = 256 * 1024;
/**
 * Longer than the kernel's coarse clock tick (1-10 ms), which stamps a file's
 * modification and change times: a file written twice within one tick keeps
 * the same times, so a stamp could not tell the two contents apart.
 */
const STAMP_TICK_MS = 20;

/** Copies the first `bytes` of `from` into `to`. */
async function _copyPrefix(from: string, to: string, bytes: number): Promise<void> {
  const data = await Deno.readFile(from);
  await Deno.writeFile(to, data.subarray(0, bytes));
}

Deno.test("fetch: resume: a killed client resumes with only the unverified parts", async () => {
  const cluster = await startCluster({
    servers: 5,
    replicas: 3,
    files: { "big.bin": 6 * MiB },
  });
  try {
    const dest = await newDest(cluster);
    // Slow the client so it is surely mid-file when killed.
    const first = cluster.spawnFetch("big.bin", dest, ["--limit-rate", "2MiB", "--parallel", "2"]);
    // 6 MiB in 256 KiB parts: 24 parts; kill once a third is recorded verified.
    await waitForVerifiedParts(join(dest, "big.bin.fts-state"), 8);
    first.kill("SIGKILL");
    await first.status;
    const state = join(dest, "big.bin.fts-state");
    assert.ok((await Deno.stat(state)).isFile, "the control file should survive a SIGKILL");
    const before = await cluster.bytesServed();
    const summary = await fetchJson(cluster, "big.bin", dest);
    const served = (await cluster.bytesServed()) - before;
    await assertSameFile(join(dest, "big.bin"), join(cluster.work, "src", "big.bin"));
    assert.ok(summary.partsPresent > 0, `nothing was kept: ${JSON.stringify(summary)}`);
    assert.equal(summary.partsPresent + summary.partsFetched, summary.parts);
    assert.equal(summary.bytesReceived, summary.size - summary.bytesPresent);
    // Server-side count agrees with what the client says crossed the network.
    assert.equal(served, summary.bytesReceived);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: a destination holding the first 70% transfers about 30%", async () => {
  const size = 10 * MiB + 1234;
  const cluster = await startCluster({ servers: 5, replicas: 3, files: { "v.bin": size } });
  try {
    const dest = await newDest(cluster);
    const present = Math.floor(size * 0.7);
    await _copyPrefix(join(cluster.work, "src", "v.bin"), join(dest, "v.bin"), present);
    const before = await cluster.bytesServed();
    const summary = await fetchJson(cluster, "v.bin", dest);
    const served = (await cluster.bytesServed()) - before;
    await assertSameFile(join(dest, "v.bin"), join(cluster.work, "src", "v.bin"));
    // The part cut at 70% continues from its last byte: exactly the missing bytes move.
    assert.equal(summary.bytesReceived, size - present);
    assert.equal(served, size - present);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: one damaged region re-fetches only the damaged part(s)", async () => {
  const size = 8 * MiB;
  const cluster = await startCluster({ servers: 5, replicas: 3, files: { "d.bin": size } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "d.bin");
    await Deno.copyFile(join(cluster.work, "src", "d.bin"), target);
    // 4 KiB across a part boundary: two parts damaged.
    await damageFile(target, 3 * PART - 2048, 4096);
    const before = await cluster.bytesServed();
    const summary = await fetchJson(cluster, "d.bin", dest);
    const served = (await cluster.bytesServed()) - before;
    await assertSameFile(target, join(cluster.work, "src", "d.bin"));
    assert.equal(summary.partsFetched, 2);
    assert.equal(summary.bytesReceived, 2 * PART);
    assert.equal(served, 2 * PART);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: a complete, correct destination transfers no part data, a leftover partial file beside it either", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "c.bin": 3 * MiB } });
  try {
    const dest = await newDest(cluster);
    await Deno.copyFile(join(cluster.work, "src", "c.bin"), join(dest, "c.bin"));
    const before = await cluster.bytesServed();
    const summary = await fetchJson(cluster, "c.bin", dest);
    assert.equal(summary.bytesReceived, 0);
    assert.equal(summary.partsFetched, 0);
    assert.equal(summary.partsPresent, summary.parts);
    assert.equal((await cluster.bytesServed()) - before, 0);
    await assertSameFile(join(dest, "c.bin"), join(cluster.work, "src", "c.bin"));
    // Beside it, a partial file no control file speaks for (a fetch killed in its
    // first second), empty or holding junk: the copy is checked, nothing is fetched.
    for (const junk of [new Uint8Array(0), new Uint8Array(MiB + 7).fill(0x5a)]) {
      const partial = join(dest, "c.bin.fts-partial");
      await Deno.writeFile(partial, junk);
      const again = await fetchJson(cluster, "c.bin", dest);
      assert.equal(again.bytesReceived, 0, `with ${junk.length} bytes of junk`);
      assert.equal(again.partsPresent, again.parts);
      await assert.rejects(Deno.lstat(partial), Deno.errors.NotFound);
      await assertSameFile(join(dest, "c.bin"), join(cluster.work, "src", "c.bin"));
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: --verify re-hashes parts the control file vouches for", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "v.bin": 4 * MiB } });
  try {
    const dest = await newDest(cluster);
    const first = cluster.spawnFetch("v.bin", dest, ["--limit-rate", "1MiB", "--parallel", "1"]);
    await waitForVerifiedParts(join(dest, "v.bin.fts-state"), 4);
    first.kill("SIGKILL");
    await first.status;
    // Damage a part the control file already lists as verified.
    const state = JSON.parse(await Deno.readTextFile(join(dest, "v.bin.fts-state")));
    assert.equal(atob(state.verified).charCodeAt(0) & 1, 1, "part 0 should be recorded verified");
    const partial = join(dest, "v.bin.fts-partial");
    await damageFile(partial, 100, 10);
    const summary = await fetchJson(cluster, "v.bin", dest, ["--verify"]);
    await assertSameFile(join(dest, "v.bin"), join(cluster.work, "src", "v.bin"));
    assert.ok(summary.partsPresent > 0);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: a control file is trusted only in the boot that wrote it, and only for the file as it was then", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "b.bin": 4 * MiB } });
  try {
    const killed = await newDest(cluster);
    const first = cluster.spawnFetch("b.bin", killed, ["--limit-rate", "1MiB", "--parallel", "1"]);
    await waitForVerifiedParts(join(killed, "b.bin.fts-state"), 4);
    first.kill("SIGKILL");
    await first.status;
    const state = JSON.parse(await Deno.readTextFile(join(killed, "b.bin.fts-state")));
    // On Linux the claims are saved unflushed, tagged with the running boot.
    const bootId = (await Deno.readTextFile("/proc/sys/kernel/random/boot_id")).trim();
    assert.equal(state.bootId, bootId);
    assert.equal(atob(state.verified).charCodeAt(0) & 1, 1, "part 0 should be recorded verified");
    // Resume copies whose control file names the copy as it is (its stamp):
    // as if in the same boot, as if after a reboot, and one damaged since.
    const copies: Record<string, string> = {};
    for (const how of ["same", "other", "damaged"]) {
      const dest = await newDest(cluster);
      const partial = join(dest, "b.bin.fts-partial");
      await Deno.copyFile(join(killed, "b.bin.fts-partial"), partial);
      const stamp = fileStamp(await Deno.stat(partial));
      const copy = { ...state, stamp, bootId: how === "other" ? crypto.randomUUID() : bootId };
      await Deno.writeTextFile(join(dest, "b.bin.fts-state"), JSON.stringify(copy));
      // Written behind the control file's back: the file is no longer the one it vouches for.
      if (how === "damaged") {
        // Later than the copy's stamp by more than a clock tick, so its times change.
        await new Promise((resolve) => setTimeout(resolve, STAMP_TICK_MS));
        await damageFile(partial, 100, 10);
      }
      copies[how] = dest;
    }
    const same = await fetchJson(cluster, "b.bin", copies.same!);
    const other = await fetchJson(cluster, "b.bin", copies.other!);
    const damaged = await fetchJson(cluster, "b.bin", copies.damaged!);
    const source = join(cluster.work, "src", "b.bin");
    // Same boot, same file: the claims stand, nothing is hashed again.
    assert.ok(same.partsPresent >= 4, JSON.stringify(same));
    assert.equal(same.bytesChecked, 0);
    await assertSameFile(join(copies.same!, "b.bin"), source);
    // Another boot: every part is hashed again; those intact are kept.
    assert.ok(other.bytesChecked > 0 && other.partsPresent > 0, JSON.stringify(other));
    await assertSameFile(join(copies.other!, "b.bin"), source);
    // Changed since: hashed again, and the damaged part fetched again.
    assert.ok(damaged.bytesChecked > 0 && damaged.partsPresent > 0, JSON.stringify(damaged));
    assert.ok(damaged.bytesReceived >= PART && damaged.bytesReceived < damaged.size);
    await assertSameFile(join(copies.damaged!, "b.bin"), source);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a larger stale destination is cut to the right size", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "s.bin": MiB + 5 } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "s.bin");
    const src = await Deno.readFile(join(cluster.work, "src", "s.bin"));
    const longer = new Uint8Array(src.length + 4096);
    longer.set(src);
    await Deno.writeFile(target, longer);
    const summary = await fetchJson(cluster, "s.bin", dest);
    assert.equal(summary.bytesReceived, 0);
    await assertSameFile(target, join(cluster.work, "src", "s.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: a bad byte in the kept start of a cut part blames no replica", async () => {
  const size = 4 * MiB;
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "p.bin": size } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "p.bin");
    // The destination ends in the middle of part 10, and part 10's start is damaged.
    const present = 10 * PART + PART / 2;
    await _copyPrefix(join(cluster.work, "src", "p.bin"), target, present);
    await damageFile(target, 10 * PART + 100, 1);
    const result = await cluster.fts(["fetch", "p.bin", dest, "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout);
    await assertSameFile(target, join(cluster.work, "src", "p.bin"));
    assert.equal(summary.digestMismatches, 0, result.stderr);
    for (const port of cluster.ports) {
      const quarantined = [
        ...Deno.readDirSync(join(cluster.dir, "instances", String(port), "quarantine")),
      ];
      assert.deepEqual(quarantined, [], `instance ${port} quarantined a good copy`);
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: another file of the same name is replaced only when the fetch succeeds", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "u.bin": 2 * MiB } });
  try {
    const dest = await newDest(cluster);
    // Same name and size, other bytes: nothing in it is this file.
    await writeRandomFile(join(dest, "u.bin"), 2 * MiB, 4242);
    const other = await sha256File(join(dest, "u.bin"));
    const manifest = await readManifestJson(cluster.dir);
    const holders = manifest.files["u.bin"]!.parts[5]!.replicas.map(Number);
    for (const port of holders) await cluster.kill(port);
    const failed = await cluster.fts(["fetch", "u.bin", dest]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /part 5\b/);
    // The failed fetch worked beside it: the other file is exactly as it was.
    assert.equal(await sha256File(join(dest, "u.bin")), other);
    assert.ok((await Deno.stat(join(dest, "u.bin.fts-partial"))).isFile);

    for (const port of holders) await cluster.start(port);
    const summary = await fetchJson(cluster, "u.bin", dest);
    await assertSameFile(join(dest, "u.bin"), join(cluster.work, "src", "u.bin"));
    // The resume used the partial file's verified parts, not the other file's bytes.
    assert.ok(summary.partsPresent > 0, JSON.stringify(summary));
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["u.bin"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a copy of the file damaged in its first part is still repaired in place", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "p.bin": 2 * MiB } });
  try {
    const dest = await newDest(cluster);
    await Deno.copyFile(join(cluster.work, "src", "p.bin"), join(dest, "p.bin"));
    await damageFile(join(dest, "p.bin"), 10, 100);
    const summary = await fetchJson(cluster, "p.bin", dest);
    await assertSameFile(join(dest, "p.bin"), join(cluster.work, "src", "p.bin"));
    // A middle or last part hashed right, so the file was taken for this one: one part moved.
    assert.equal(summary.bytesReceived, PART);
  } finally {
    await cluster.stop();
  }
});

/**
 * A cluster holding c.bin (`size` bytes in 256 KiB parts, one copy each) and a
 * destination whose partial file holds all of it but the last part: the fetch
 * checks every other part while it fetches that one.
 */
async function _checkingWhileFetching(size: number) {
  const cluster = await startCluster({
    servers: 3,
    replicas: 1,
    partSize: "256KiB",
    files: { "c.bin": size },
  });
  const dest = await newDest(cluster);
  const source = join(cluster.work, "src", "c.bin");
  await _copyPrefix(source, join(dest, "c.bin.fts-partial"), size - PART);
  let last: FetchProgress | undefined;
  const controller = new AbortController();
  const fetch = (onEvent: (event: FetchEvent) => void) =>
    fetchFile({
      name: "c.bin",
      destDir: dest,
      servers: cluster.ports.map((port) => `127.0.0.1:${port}`),
      // SHA-256 over what is on disk: the slowest check, so it is surely under way.
      verify: true,
      signal: controller.signal,
      onEvent,
    }, (progress) => (last = progress));
  return { cluster, dest, source, controller, fetch, last: () => last };
}

Deno.test("fetch: a fetch stopped (Ctrl-C) while it checks the destination stops the check instead of reading the rest", async () => {
  const size = 64 * MiB;
  const { cluster, dest, source, controller, fetch, last } = await _checkingWhileFetching(size);
  try {
    // Stopped right after the check begins, as Ctrl-C does: the check's first
    // ranges are posted in the same turn of the event loop as the "checking"
    // event, and a timer runs only after that turn.
    await assert.rejects(
      fetch((event) => {
        if (event.type === "checking") {
          setTimeout(() => controller.abort(new Error("stopped by the test")), 0);
        }
      }),
      /stopped by the test/,
    );
    // Read whole, the check would have hashed 255 parts before the fetch ended;
    // now it stops with the parts being hashed (2 per worker) when it was told,
    // and those hashed in the millisecond or so before the timer ran.
    const progress = last()!;
    assert.ok(progress, "no progress was reported");
    assert.ok(progress.bytesChecked < 64 * PART, `${progress.bytesChecked} bytes were checked`);
    // No control file from an unfinished check: the next run checks again and completes the file.
    await assert.rejects(Deno.stat(join(dest, "c.bin.fts-state")));
    const again = await fetchJson(cluster, "c.bin", dest);
    assert.equal(again.partsFetched, 1);
    await assertSameFile(join(dest, "c.bin"), source);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a part that cannot be fetched stops the check of the destination too, and the error names the part", async () => {
  const size = 64 * MiB;
  const { cluster, dest, source, fetch, last } = await _checkingWhileFetching(size);
  try {
    // The entry lists no replica for the last part: it fails as soon as the
    // fetch turns to it, whatever the instances' speed (an instance answering
    // NOT_FOUND was too slow on a loaded machine: half the check was read).
    let replicas: unknown;
    await editManifestEntry(cluster.dir, "c.bin", (parts) => {
      replicas = parts.at(-1)!.replicas;
      parts.at(-1)!.replicas = [];
    });
    await assert.rejects(fetch(() => {}), /Cannot fetch part 255 of "c\.bin"/);
    const progress = last()!;
    // Read whole, the check would have hashed all 255 other parts.
    assert.ok(progress.bytesChecked < size / 2, `${progress.bytesChecked} bytes were checked`);
    await assert.rejects(Deno.stat(join(dest, "c.bin.fts-state")));
    // With the replica listed again, the next run checks the partial file again and finishes it.
    await editManifestEntry(cluster.dir, "c.bin", (parts) => {
      parts.at(-1)!.replicas = replicas;
    });
    const again = await fetchJson(cluster, "c.bin", dest);
    assert.equal(again.partsFetched, 1);
    await assertSameFile(join(dest, "c.bin"), source);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: resume: a copy stretched with holes by a fetch killed in it is resumed in place, not fetched again beside it", async () => {
  const size = 6 * MiB;
  const cluster = await startCluster({ servers: 5, replicas: 3, files: { "cut.bin": size } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "cut.bin");
    // A copy cut short at 30 % (7 whole parts of 24), as a fetch working in it
    // leaves it when killed before its control file caught up, or when the
    // disk filled: stretched to full size at once, zeros where parts go.
    await _copyPrefix(join(cluster.work, "src", "cut.bin"), target, Math.floor(size * 0.3));
    await Deno.truncate(target, size);
    const before = await cluster.bytesServed();
    const summary = await fetchJson(cluster, "cut.bin", dest);
    await assertSameFile(target, join(cluster.work, "src", "cut.bin"));
    assert.equal(summary.partsPresent, 7, `taken for another file: ${JSON.stringify(summary)}`);
    assert.equal(summary.bytesReceived, size - 7 * PART);
    assert.equal((await cluster.bytesServed()) - before, size - 7 * PART);
    // Worked in place: no second copy of the file was made beside it.
    assert.equal(await Deno.stat(`${target}.fts-partial`).catch(() => undefined), undefined);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: stopped while resuming in the user's shorter copy, it gives back the stretch: no copy looks whole that is not", async () => {
  const size = 4 * MiB;
  const cluster = await startCluster({
    servers: 3,
    replicas: 1,
    partSize: "256KiB",
    files: { "s.bin": size },
  });
  try {
    const dest = await newDest(cluster);
    const source = join(cluster.work, "src", "s.bin");
    const target = join(dest, "s.bin");
    // 30 %, not on a part's boundary: the user's own bytes end inside part 4.
    const kept = Math.floor(size * 0.3);
    await _copyPrefix(source, target, kept);
    const controller = new AbortController();
    await assert.rejects(
      fetchFile({
        name: "s.bin",
        destDir: dest,
        servers: cluster.ports.map((port) => `127.0.0.1:${port}`),
        limitRateBytesPerSecond: 2 * MiB,
        signal: controller.signal,
      }, (progress) => {
        if (progress.partsFetched >= 2) controller.abort(new Error("stopped by the test"));
      }),
      /stopped by the test/,
    );
    const left = (await Deno.stat(target)).size;
    assert.ok(left >= kept && left < size, `${left} bytes left of ${size} (had ${kept})`);
    const want = await Deno.readFile(source);
    assert.deepEqual(await Deno.readFile(target), want.subarray(0, left));
    // The next run finishes it, trusting only what is there.
    const again = await fetchJson(cluster, "s.bin", dest);
    await assertSameFile(target, source);
    assert.equal(again.bytesReceived, size - again.bytesPresent);
    assert.ok(again.bytesPresent >= Math.floor(kept / PART) * PART, JSON.stringify(again));
  } finally {
    await cluster.stop();
  }
});
