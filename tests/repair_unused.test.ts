/**
 * Parts no file uses (an upload that stored its parts and never published)
 * are deleted by repair once every copy is older than --unused-after; parts a
 * file uses, and unused parts with a recent copy, are kept whatever their age.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { exists } from "../lib/base/fs_util.ts";
import { loadOrCreateIdentity } from "../lib/auth/identity.ts";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { uploadFile } from "../lib/client/upload.ts";
import {
  assertSameFile,
  mustRun,
  readManifestJson,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import { partSigner, putLoosePart } from "./part_signer.ts";

const KiB = 1024;
const PART = 100 * KiB;
const TWO_DAYS_AGO = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);

Deno.test("repair deletes parts no file uses once every copy is older than --unused-after (an anonymous part.has saves none, a signed one does), and nothing else", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    files: { "a.bin": 700 * KiB },
  });
  try {
    const [p0, p1, p2] = cluster.ports.map(String) as [string, string, string];
    // Parts as an abandoned upload leaves them: stored, in no file.
    const put = (ids: string[], seed: number) =>
      putLoosePart(ids.map((id) => `127.0.0.1:${id}`), PART, seed);
    const oldA = await put([p0, p1], 1);
    const oldB = await put([p2], 2);
    const fresh = await put([p0], 3);
    const halfOld = await put([p0, p1], 4);
    const asked = await put([p1], 5);
    const resent = await put([p2], 6);
    const askedAnonymously = await put([p1], 7);
    const age = (id: string, digest: string) =>
      Deno.utime(storedPartPath(cluster.dir, id, digest), TWO_DAYS_AGO, TWO_DAYS_AGO);
    await age(p0, oldA);
    await age(p1, oldA);
    await age(p2, oldB);
    await age(p0, halfOld);
    await age(p1, asked);
    await age(p2, resent);
    await age(p1, askedAnonymously);
    // An upload that finds a part already stored (a signed part.has), or sends it
    // again, marks it as in use: the next repair keeps it. Anyone may ask
    // anonymously, and that keeps nothing.
    const peer1 = await Peer.connect(`127.0.0.1:${p1}`);
    try {
      assert.equal(await peer1.hasPart(asked, await partSigner(peer1)), PART);
      assert.equal(await peer1.hasPart(askedAnonymously), PART);
    } finally {
      peer1.close();
    }
    assert.equal(await put([p2], 6), resent);
    // The parts a file uses are just as old: age never makes them unused.
    const manifest = await readManifestJson(cluster.dir);
    const used = manifest.files["a.bin"]!.parts.flatMap((part) =>
      part.replicas.map((id) => ({ id, digest: part.digest }))
    );
    for (const { id, digest } of used) await age(id, digest);

    // A dry run counts them and deletes nothing.
    const dry = await cluster.fts(["repair", "--dry-run", "--json"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout).unused, { parts: 3, copies: 4, bytes: 4 * PART });
    assert.ok(await exists(storedPartPath(cluster.dir, p2, oldB)));

    // A duration that would catch uploads under way is refused.
    const short = await cluster.fts(["repair", "--unused-after", "24"]);
    assert.equal(short.code, 2, short.stderr);
    assert.match(short.stderr, /--unused-after: 24\.0 s is too short/);

    // --unused-after 0 keeps them.
    const keep = await cluster.fts(["repair", "--unused-after", "0", "--json"]);
    assert.equal(keep.code, 0, keep.stderr);
    assert.deepEqual(JSON.parse(keep.stdout).unused, { parts: 0, copies: 0, bytes: 0 });
    assert.ok(await exists(storedPartPath(cluster.dir, p2, oldB)));

    const repair = await cluster.fts(["repair"]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.match(repair.stdout, /3 parts no file uses deleted \(4 copies, 400 KiB\)/);
    const gone = [[p0, oldA], [p1, oldA], [p2, oldB], [p1, askedAnonymously]] as const;
    for (const [id, digest] of gone) {
      assert.ok(!(await exists(storedPartPath(cluster.dir, id, digest))), `${id} ${digest}`);
    }
    const kept = [[p0, fresh], [p0, halfOld], [p1, halfOld], [p1, asked], [p2, resent]] as const;
    for (const [id, digest] of kept) {
      assert.ok(await exists(storedPartPath(cluster.dir, id, digest)), `${id} ${digest}`);
    }
    for (const { id, digest } of used) {
      assert.ok(await exists(storedPartPath(cluster.dir, id, digest)), `${id} ${digest}`);
    }
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetch = await cluster.fts(["fetch", "a.bin", dest]);
    assert.equal(fetch.code, 0, fetch.stderr);
    await assertSameFile(join(dest, "a.bin"), join(cluster.work, "src", "a.bin"));

    // Nothing left to delete: a second run says there is nothing to do.
    const again = await cluster.fts(["repair"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to do/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: before publishing, the copies of parts stored long ago are asked for again, which marks them as in use", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "64KiB",
    files: { "seed.bin": 1000 },
  });
  try {
    const path = join(cluster.work, "src", "slow.bin");
    await writeRandomFile(path, 4 * 64 * KiB, 9);
    const bytes = await Deno.readFile(path);
    const first = await sha256Hex(bytes.subarray(0, 64 * KiB));
    const identity = await loadOrCreateIdentity(join(cluster.work, "me.json"));
    // One part at a time, slowly: the first part's copies are on disk well before the publish.
    const upload = uploadFile({
      path,
      name: "slow.bin",
      servers: cluster.ports.map((port) => `127.0.0.1:${port}`),
      identity,
      parallel: 1,
      limitRateBytesPerSecond: 128 * KiB,
      refreshCopiesAfterMs: 0,
    });
    // Once both copies of the first part are stored, they are made to look two days old.
    const copies = cluster.ports.map((port) => storedPartPath(cluster.dir, String(port), first));
    let aged: string[] = [];
    for (let tries = 0; aged.length < 2; tries++) {
      assert.ok(tries < 1000, "the first part's copies never appeared");
      await new Promise((r) => setTimeout(r, 20));
      aged = [];
      for (const copy of copies) if (await exists(copy)) aged.push(copy);
    }
    for (const copy of aged) await Deno.utime(copy, TWO_DAYS_AGO, TWO_DAYS_AGO);
    await upload;
    for (const copy of aged) {
      const { mtime } = await Deno.stat(copy);
      assert.ok(mtime!.getTime() > Date.now() - 60_000, `${copy} was not marked as in use`);
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("repair: a surplus copy that cannot be deleted is said and skipped; the rest of the run goes on", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 1, files: { "s.bin": 8 * PART } });
  // Root deletes through permission bits: the store is bound read-only onto itself, then.
  const root = Deno.uid() === 0;
  const [p0, , p2] = cluster.ports.map(String) as [string, string, string];
  const store = join(cluster.dir, "instances", p2, "parts");
  const unused = await putLoosePart([`127.0.0.1:${p0}`], PART, 9);
  await Deno.utime(storedPartPath(cluster.dir, p0, unused), TWO_DAYS_AGO, TWO_DAYS_AGO);
  try {
    // Every part on every instance: two surplus copies each, some of them on p2.
    for (const part of (await readManifestJson(cluster.dir)).files["s.bin"]!.parts) {
      const from = storedPartPath(cluster.dir, part.replicas[0]!, part.digest);
      for (const id of cluster.ports.map(String)) {
        const to = storedPartPath(cluster.dir, id, part.digest);
        if (to === from) continue;
        await Deno.mkdir(join(to, ".."), { recursive: true });
        await Deno.copyFile(from, to);
      }
    }
    if (root) {
      await mustRun("mount", ["--bind", store, store]);
      await mustRun("mount", ["-o", "remount,ro,bind", store]);
    } else {
      for await (const dir of Deno.readDir(store)) await Deno.chmod(join(store, dir.name), 0o555);
    }
    const repair = await cluster.fts(["repair", "--unused-after", "1h"]);
    assert.equal(repair.code, 1, repair.stdout + repair.stderr);
    assert.match(
      repair.stdout,
      new RegExp(`could not delete the surplus copy of part \\w+ on ${p2}`),
    );
    // One or more, as the drops that ran at once before the first failure was seen.
    assert.match(repair.stdout, /\d+ surplus cop(y|ies) could not be deleted/);
    assert.match(repair.stdout, /1 part no file uses deleted/);
    assert.equal(await exists(storedPartPath(cluster.dir, p0, unused)), false);
    const dest = join(cluster.work, "dest");
    const fetched = await cluster.fts(["fetch", "s.bin", dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
  } finally {
    if (root) await mustRun("umount", [store]).catch(() => {});
    else {
      for await (const dir of Deno.readDir(store)) await Deno.chmod(join(store, dir.name), 0o755);
    }
    await cluster.stop();
  }
});
