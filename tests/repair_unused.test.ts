/**
 * Parts no file uses (an upload that stored its parts and never published)
 * are deleted by repair once every copy is older than --unused-after; parts a
 * file uses, and unused parts with a recent copy, are kept whatever their age.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Peer } from "../lib/peer.ts";
import { sha256Hex } from "../lib/sha256.ts";
import { assertSameFile, readManifestJson, startCluster, storedPartPath } from "./harness.ts";

const KiB = 1024;
const PART = 100 * KiB;
const TWO_DAYS_AGO = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);

async function _exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("repair deletes parts no file uses once every copy is older than --unused-after, and nothing else", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    files: { "a.bin": 700 * KiB },
  });
  try {
    const [p0, p1, p2] = cluster.ports.map(String) as [string, string, string];
    // Parts as an abandoned upload leaves them: stored, in no file.
    const put = async (ids: string[], seed: number): Promise<string> => {
      const bytes = new Uint8Array(PART).fill(seed);
      const digest = await sha256Hex(bytes);
      for (const id of ids) {
        const peer = await Peer.connect(`127.0.0.1:${id}`);
        try {
          assert.deepEqual(await peer.putPart(digest, PART, [bytes].values() as never), {
            stored: true,
          });
        } finally {
          peer.close();
        }
      }
      return digest;
    };
    const oldA = await put([p0, p1], 1);
    const oldB = await put([p2], 2);
    const fresh = await put([p0], 3);
    const halfOld = await put([p0, p1], 4);
    const age = (id: string, digest: string) =>
      Deno.utime(storedPartPath(cluster.dir, id, digest), TWO_DAYS_AGO, TWO_DAYS_AGO);
    await age(p0, oldA);
    await age(p1, oldA);
    await age(p2, oldB);
    await age(p0, halfOld);
    // The parts a file uses are just as old: age never makes them unused.
    const manifest = await readManifestJson(cluster.dir);
    const used = manifest.files["a.bin"]!.parts.flatMap((part) =>
      part.replicas.map((id) => ({ id, digest: part.digest }))
    );
    for (const { id, digest } of used) await age(id, digest);

    // A dry run counts them and deletes nothing.
    const dry = await cluster.fts(["repair", "--dry-run", "--json"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(JSON.parse(dry.stdout).unused, { parts: 2, copies: 3, bytes: 3 * PART });
    assert.ok(await _exists(storedPartPath(cluster.dir, p2, oldB)));

    // --unused-after 0 keeps them.
    const keep = await cluster.fts(["repair", "--unused-after", "0", "--json"]);
    assert.equal(keep.code, 0, keep.stderr);
    assert.deepEqual(JSON.parse(keep.stdout).unused, { parts: 0, copies: 0, bytes: 0 });
    assert.ok(await _exists(storedPartPath(cluster.dir, p2, oldB)));

    const repair = await cluster.fts(["repair"]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.match(repair.stdout, /2 parts no file uses deleted \(3 copies, 300 KiB\)/);
    for (const [id, digest] of [[p0, oldA], [p1, oldA], [p2, oldB]] as const) {
      assert.ok(!(await _exists(storedPartPath(cluster.dir, id, digest))), `${id} ${digest}`);
    }
    for (const [id, digest] of [[p0, fresh], [p0, halfOld], [p1, halfOld]] as const) {
      assert.ok(await _exists(storedPartPath(cluster.dir, id, digest)), `${id} ${digest}`);
    }
    for (const { id, digest } of used) {
      assert.ok(await _exists(storedPartPath(cluster.dir, id, digest)), `${id} ${digest}`);
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
