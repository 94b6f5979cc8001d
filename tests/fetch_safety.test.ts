/**
 * What a fetch may write into, and when it may trust what is already there:
 * a control file vouches only for the file as it was; a file that merely
 * starts like this one is not worked on in place; links are replaced, never
 * written through; two fetches of one name take turns.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  damageFile,
  fetchJson,
  FtsProcess,
  mustRun,
  newDest,
  readManifestJson,
  sha256File,
  startCluster,
  waitForVerifiedParts,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1024 * 1024;
const PART = 256 * 1024;

Deno.test("fetch: a file replaced after a killed fetch is checked again, not taken on the control file's word", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "r.bin": 4 * MiB } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "r.bin");
    const source = join(cluster.work, "src", "r.bin");
    // Half of it already there: worked on in place, with a control file naming it.
    const bytes = await Deno.readFile(source);
    await Deno.writeFile(target, bytes.subarray(0, 2 * MiB));
    const first = cluster.spawnFetch("r.bin", dest, ["--limit-rate", "1MiB", "--parallel", "1"]);
    await waitForVerifiedParts(join(dest, "r.bin.fts-state"), 10);
    first.kill("SIGKILL");
    await first.status;
    // The user puts another file of that name there, over the same inode.
    await writeRandomFile(join(cluster.work, "other.bin"), 4 * MiB, 77);
    await Deno.writeFile(target, await Deno.readFile(join(cluster.work, "other.bin")));
    const summary = await fetchJson(cluster, "r.bin", dest);
    await assertSameFile(target, source);
    assert.ok(summary.bytesChecked > 0, JSON.stringify(summary));
    assert.equal(summary.partsPresent, 0, "nothing of the other file is this one");
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a file that only starts like this one is left alone until the fetch succeeds", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "h.bin": 2 * MiB } });
  try {
    const dest = await newDest(cluster);
    const target = join(dest, "h.bin");
    // Its first part is this file's (a shared header); the rest is other bytes.
    await writeRandomFile(target, 2 * MiB, 4343);
    const header = (await Deno.readFile(join(cluster.work, "src", "h.bin"))).subarray(0, PART);
    const file = await Deno.open(target, { write: true });
    await file.write(header);
    file.close();
    const before = await sha256File(target);
    const manifest = await readManifestJson(cluster.dir);
    const holders = manifest.files["h.bin"]!.parts[5]!.replicas.map(Number);
    for (const port of holders) await cluster.kill(port);
    const failed = await cluster.fts(["fetch", "h.bin", dest]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.equal(await sha256File(target), before, "the other file was written into");
    for (const port of holders) await cluster.start(port);
    await fetchJson(cluster, "h.bin", dest);
    await assertSameFile(target, join(cluster.work, "src", "h.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a hard link or symlink at the destination or its partial file is never written through", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "l.bin": MiB + 77 } });
  try {
    const source = join(cluster.work, "src", "l.bin");
    const elsewhere = await newDest(cluster);
    // A damaged copy kept elsewhere (a backup snapshot), linked into the destination.
    const backup = join(elsewhere, "backup.bin");
    await Deno.copyFile(source, backup);
    await damageFile(backup, 300_000, 100);
    const backupDigest = await sha256File(backup);

    const hard = await newDest(cluster);
    await Deno.link(backup, join(hard, "l.bin"));
    await fetchJson(cluster, "l.bin", hard);
    await assertSameFile(join(hard, "l.bin"), source);
    assert.equal((await Deno.lstat(join(hard, "l.bin"))).nlink, 1);
    assert.equal(await sha256File(backup), backupDigest, "written through the hard link");

    const soft = await newDest(cluster);
    await Deno.symlink(backup, join(soft, "l.bin"));
    await fetchJson(cluster, "l.bin", soft);
    assert.ok((await Deno.lstat(join(soft, "l.bin"))).isFile, "the symlink was not replaced");
    await assertSameFile(join(soft, "l.bin"), source);
    assert.equal(await sha256File(backup), backupDigest, "written through the symlink");

    // A symlink pointing nowhere is replaced too.
    const dangling = await newDest(cluster);
    await Deno.symlink(join(elsewhere, "missing.bin"), join(dangling, "l.bin"));
    await fetchJson(cluster, "l.bin", dangling);
    await assertSameFile(join(dangling, "l.bin"), source);

    // A partial file that is a symlink is refused, and its target left alone.
    const trap = await newDest(cluster);
    await Deno.symlink(backup, join(trap, "l.bin.fts-partial"));
    const refused = await cluster.fts(["fetch", "l.bin", trap]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /l\.bin\.fts-partial exists and is not a regular file/);
    assert.equal(await sha256File(backup), backupDigest);

    // A partial file with another name (a hard link, as `cp -al` of an interrupted download
    // leaves): resumed in a copy of its own, the other name's bytes untouched.
    const snapshot = join(elsewhere, "snapshot.fts-partial");
    const half = (await Deno.readFile(backup)).subarray(0, 600_000);
    await Deno.writeFile(snapshot, half);
    const snapshotDigest = await sha256File(snapshot);
    const linked = await newDest(cluster);
    await Deno.link(snapshot, join(linked, "l.bin.fts-partial"));
    await fetchJson(cluster, "l.bin", linked);
    await assertSameFile(join(linked, "l.bin"), source);
    assert.equal(await sha256File(snapshot), snapshotDigest, "written through the hard link");
    assert.equal((await Deno.lstat(snapshot)).nlink, 1);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: two fetches of one name into one directory take turns; both succeed", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "t.bin": 4 * MiB } });
  try {
    const dest = await newDest(cluster);
    const args = ["--limit-rate", "1MiB", "--data", cluster.dir];
    const first = new FtsProcess(["fetch", "t.bin", dest, ...args]);
    // The second starts once the first holds the destination.
    for (
      let tries = 0;
      !(await Deno.stat(join(dest, "t.bin.fts-partial")).catch(() => null));
      tries++
    ) {
      assert.ok(tries < 500, "the first fetch never started writing");
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = new FtsProcess(["fetch", "t.bin", dest, ...args]);
    const [a, b] = await Promise.all([first.result(), second.result()]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr + a.stderr, /waiting: another fetch is writing .*t\.bin/);
    await assertSameFile(join(dest, "t.bin"), join(cluster.work, "src", "t.bin"));
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["t.bin"]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("fetch: a fetch stopped with Ctrl-C resumes on its control file without hashing again", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "c.bin": 4 * MiB } });
  try {
    const dest = await newDest(cluster);
    const first = cluster.spawnFetch("c.bin", dest, ["--limit-rate", "1MiB", "--parallel", "1"]);
    await waitForVerifiedParts(join(dest, "c.bin.fts-state"), 4);
    first.kill("SIGINT");
    assert.notEqual((await first.status).code, 0);
    const summary = await fetchJson(cluster, "c.bin", dest);
    await assertSameFile(join(dest, "c.bin"), join(cluster.work, "src", "c.bin"));
    assert.ok(summary.partsPresent >= 4, JSON.stringify(summary));
    assert.equal(summary.bytesChecked, 0, "the control file was not trusted");
  } finally {
    await cluster.stop();
  }
});

/** Runs a command, which must succeed. */

Deno.test("fetch: a destination it may not write in, holding the file whole, is checked and left as it is", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "256KiB",
    files: { "w.bin": 3 * PART + 99, "d.bin": 2 * PART },
  });
  // Root writes through permission bits: a read-only mount it is, then; others lose write access.
  const root = Deno.uid() === 0;
  const dest = await newDest(cluster);
  try {
    if (root) await mustRun("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dest]);
    await Deno.copyFile(join(cluster.work, "src", "w.bin"), join(dest, "w.bin"));
    await Deno.copyFile(join(cluster.work, "src", "d.bin"), join(dest, "d.bin"));
    await damageFile(join(dest, "d.bin"), PART + 10, 4);
    if (root) await mustRun("mount", ["-o", "remount,ro", dest]);
    else await Deno.chmod(dest, 0o555);

    const whole = await fetchJson(cluster, "w.bin", dest);
    assert.equal(whole.partsPresent, 4);
    assert.equal(whole.bytesReceived, 0);
    await assertSameFile(join(dest, "w.bin"), join(cluster.work, "src", "w.bin"));
    const batch = await cluster.fts(["fetch", "--match", "w.*", dest]);
    assert.equal(batch.code, 0, batch.stderr);
    // A damaged copy there cannot be repaired: the write error, exit 1, the copy as it was.
    const before = await sha256File(join(dest, "d.bin"));
    const damaged = await cluster.fts(["fetch", "d.bin", dest]);
    assert.equal(damaged.code, 1, damaged.stderr);
    assert.match(damaged.stderr, root ? /Read-only file system/ : /[Pp]ermission denied/);
    assert.match(damaged.stderr, /Cannot write in .*d\.bin there is not this file whole and right/);
    assert.equal(await sha256File(join(dest, "d.bin")), before);
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name).sort(), ["d.bin", "w.bin"]);
  } finally {
    if (root) await mustRun("umount", [dest]).catch(() => {});
    else await Deno.chmod(dest, 0o755).catch(() => {});
    await cluster.stop();
  }
});

Deno.test("fetch: a whole copy of the file it may not write, in a directory it may, counts as fetched", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "256KiB",
    files: { "w.bin": 3 * PART + 99 },
  });
  // Root writes through permission bits: the file is bound read-only onto itself, then.
  const root = Deno.uid() === 0;
  const dest = await newDest(cluster);
  const target = join(dest, "w.bin");
  try {
    await Deno.copyFile(join(cluster.work, "src", "w.bin"), target);
    if (root) {
      await mustRun("mount", ["--bind", target, target]);
      await mustRun("mount", ["-o", "remount,ro,bind", target]);
    } else {
      await Deno.chmod(target, 0o444);
    }
    const whole = await fetchJson(cluster, "w.bin", dest);
    assert.equal(whole.partsPresent, 4);
    assert.equal(whole.bytesReceived, 0);
    await assertSameFile(target, join(cluster.work, "src", "w.bin"));
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["w.bin"]);
  } finally {
    if (root) await mustRun("umount", [target]).catch(() => {});
    await cluster.stop();
  }
});

Deno.test("fetch: a damaged copy of the file it may not write (mode 444), in a directory it may, is fetched beside it and put in its place", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "256KiB",
    files: { "m.bin": 3 * PART + 99 },
  });
  // Root writes through permission bits: the fetch runs without that power, then.
  const prefix = Deno.uid() === 0 ? ["setpriv", "--bounding-set=-dac_override"] : [];
  const dest = await newDest(cluster);
  const target = join(dest, "m.bin");
  try {
    await Deno.copyFile(join(cluster.work, "src", "m.bin"), target);
    await damageFile(target, PART + 10, 4);
    await Deno.chmod(target, 0o444);
    const fetched = await cluster.fts(["fetch", "m.bin", dest, "--json"], { prefix });
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(target, join(cluster.work, "src", "m.bin"));
    assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), ["m.bin"]);
  } finally {
    await cluster.stop();
  }
});
