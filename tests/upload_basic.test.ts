import assert from "node:assert/strict";
import { join } from "node:path";
import { placeReplicas } from "../lib/state/placement.ts";
import {
  assertSameFile,
  FtsProcess,
  readManifestJson,
  startCluster,
  writeRandomFile,
} from "./harness.ts";
import {
  assertVerifiedCopies,
  storedCopies,
  sumCounter,
  testUser,
  waitUntil,
  whoami,
} from "./upload_util.ts";

const PART = 64 * 1024;

Deno.test("upload: A uploads, B fetches byte-identical; replace, empty file, bad names, resume (6 servers, R=3)", async (t) => {
  const cluster = await startCluster({ partSize: "64KiB", files: { "op.bin": 100_000 } });
  const alice = testUser(cluster, "alice");
  const bob = testUser(cluster, "bob");
  const src = join(cluster.work, "src");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  const ids = cluster.ports.map(String);
  try {
    const aliceKey = await whoami(cluster, alice);
    const bobKey = await whoami(cluster, bob);

    await t.step("whoami: the same key on every call, in an owner-only file", async () => {
      assert.equal(await whoami(cluster, alice), aliceKey);
      assert.notEqual(aliceKey, bobKey);
      assert.equal((await Deno.stat(alice.path)).mode! & 0o777, 0o600);
    });

    await t.step("upload then fetch by another identity gives an identical file", async () => {
      await writeRandomFile(join(src, "a.bin"), 16 * PART + 4567, 11);
      const up = await cluster.fts(["upload", join(src, "a.bin"), "--json"], { env: alice.env });
      assert.equal(up.code, 0, up.stderr);
      const result = JSON.parse(up.stdout);
      assert.equal(result.parts, 17);
      assert.equal(result.copiesSent, 17 * 3);
      const entry = (await readManifestJson(cluster.dir)).files["a.bin"]!;
      assert.equal((entry as unknown as { owner: string }).owner, aliceKey);
      // Every instance is up, so the copies are exactly where preload would put them.
      for (const part of entry.parts) {
        assert.deepEqual(part.replicas, placeReplicas(part.digest, ids, 3));
      }
      await assertVerifiedCopies(cluster, "a.bin", 3);
      const fetched = await cluster.fts(["fetch", "a.bin", dest], { env: bob.env });
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, "a.bin"), join(src, "a.bin"));
    });

    await t.step(
      "upload over an existing name needs --replace, and only the owner may",
      async () => {
        const before = await readManifestJson(cluster.dir);
        const again = await cluster.fts(["upload", join(src, "a.bin")], { env: alice.env });
        assert.equal(again.code, 1);
        assert.match(again.stderr, /already exists; pass --replace/);
        const theirs = await cluster.fts(["upload", join(src, "a.bin"), "--replace"], {
          env: bob.env,
        });
        assert.equal(theirs.code, 1);
        assert.match(theirs.stderr, /Cannot replace "a\.bin": it belongs to ed25519:/);
        const operators = await cluster.fts([
          "upload",
          join(src, "a.bin"),
          "--as",
          "op.bin",
          "--replace",
        ], {
          env: alice.env,
        });
        assert.equal(operators.code, 1);
        assert.match(operators.stderr, /belongs to operator/);
        assert.equal((await readManifestJson(cluster.dir)).generation, before.generation);

        const oldDigests = before.files["a.bin"]!.parts.map((p) => p.digest);
        await writeRandomFile(join(src, "a2.bin"), 5 * PART, 12);
        const replaced = await cluster.fts(
          ["upload", join(src, "a2.bin"), "--as", "a.bin", "--replace"],
          { env: alice.env },
        );
        assert.equal(replaced.code, 0, replaced.stderr);
        await Deno.remove(join(dest, "a.bin"));
        const fetched = await cluster.fts(["fetch", "a.bin", dest]);
        assert.equal(fetched.code, 0, fetched.stderr);
        await assertSameFile(join(dest, "a.bin"), join(src, "a2.bin"));
        // The replaced content's parts are freed everywhere.
        const copies = await storedCopies(cluster.dir);
        for (const digest of oldDigests) assert.ok(!copies.has(digest), `${digest} still stored`);
      },
    );

    await t.step("an empty file uploads and fetches", async () => {
      await Deno.writeFile(join(src, "empty.bin"), new Uint8Array());
      const up = await cluster.fts(["upload", join(src, "empty.bin")], { env: alice.env });
      assert.equal(up.code, 0, up.stderr);
      const fetched = await cluster.fts(["fetch", "empty.bin", dest]);
      assert.equal(fetched.code, 0, fetched.stderr);
      assert.equal((await Deno.stat(join(dest, "empty.bin"))).size, 0);
    });

    await t.step("bad names are refused with a clear error and change nothing", async () => {
      const before = await readManifestJson(cluster.dir);
      const bad: [string, RegExp][] = [
        ["", /must not be empty/],
        ["x".repeat(256), /longer than 255 bytes/],
        ["é".repeat(128), /longer than 255 bytes/],
        ["a/b", /must not contain a slash/],
        ["a\\b", /must not contain a slash/],
        ["..", /is not allowed/],
        [".", /is not allowed/],
        ["bad\u0001name", /control character/],
        ["tab\tname", /control character/],
      ];
      for (const [name, message] of bad) {
        const up = await cluster.fts(["upload", join(src, "a2.bin"), "--as", name], {
          env: alice.env,
        });
        assert.equal(up.code, 2, `upload --as ${JSON.stringify(name)}: ${up.stderr}`);
        assert.match(up.stderr, message);
        const mv = await cluster.fts(["mv", "a.bin", name], { env: alice.env });
        assert.equal(mv.code, 2, `mv to ${JSON.stringify(name)}: ${mv.stderr}`);
        assert.match(mv.stderr, message);
      }
      assert.equal((await readManifestJson(cluster.dir)).generation, before.generation);
    });

    await t.step(
      "an interrupted upload, run again, sends only the parts not yet stored",
      async () => {
        const parts = 32;
        await writeRandomFile(join(src, "big.bin"), parts * PART, 13);
        const storedBefore = await sumCounter(cluster, "partsStored");
        const slow = new FtsProcess(
          ["upload", join(src, "big.bin"), "--limit-rate", "512KiB", "--data", cluster.dir],
          { env: alice.env },
        );
        await waitUntil(
          "the first upload stored 15 copies",
          async () => (await sumCounter(cluster, "partsStored")) - storedBefore >= 15,
        );
        slow.kill("SIGKILL");
        await slow.status;
        // Readers never see a half-uploaded file.
        const early = await cluster.fts(["fetch", "big.bin", dest]);
        assert.equal(early.code, 1);
        assert.match(early.stderr, /No file named "big\.bin"/);

        const stored = (await sumCounter(cluster, "partsStored")) - storedBefore;
        const rerun = await cluster.fts(["upload", join(src, "big.bin"), "--json"], {
          env: alice.env,
        });
        assert.equal(rerun.code, 0, rerun.stderr);
        const result = JSON.parse(rerun.stdout);
        assert.equal(result.copiesPresent, stored);
        assert.equal(result.copiesSent, parts * 3 - stored);
        // No copy crossed the network twice.
        assert.equal((await sumCounter(cluster, "partsStored")) - storedBefore, parts * 3);
        const fetched = await cluster.fts(["fetch", "big.bin", dest]);
        assert.equal(fetched.code, 0, fetched.stderr);
        await assertSameFile(join(dest, "big.bin"), join(src, "big.bin"));
      },
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("upload: a name that starts with U+FEFF is listed, fetched, renamed and removed like any", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "op.bin": 10_000 } });
  const alice = testUser(cluster, "alice");
  const src = join(cluster.work, "src", "note.bin");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  const bom = "\ufeffnote.bin";
  const moved = "\ufeffmoved.bin";
  try {
    await writeRandomFile(src, 30_000, 7);
    const up = await cluster.fts(["upload", src, "--as", bom], { env: alice.env });
    assert.equal(up.code, 0, up.stderr);
    // Every reader of the manifest decodes each entry's key on its own.
    const ls = await cluster.fts(["ls", "--json"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok(ls.stdout.includes(JSON.stringify(bom)), ls.stdout);
    const status = await cluster.fts(["status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    // In the order of ls, by code unit (the locale's order would ignore the U+FEFF).
    const listed = (JSON.parse(status.stdout).files as { name: string }[]).map((f) => f.name);
    assert.deepEqual(listed, ["op.bin", bom]);
    const all = await cluster.fts(["fetch", "--all", dest]);
    assert.equal(all.code, 0, all.stderr);
    await assertSameFile(join(dest, bom), src);
    const mv = await cluster.fts(["mv", bom, moved], { env: alice.env });
    assert.equal(mv.code, 0, mv.stderr);
    const fetched = await cluster.fts(["fetch", moved, dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, moved), src);
    const rm = await cluster.fts(["rm", moved], { env: alice.env });
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(Object.keys((await readManifestJson(cluster.dir)).files), ["op.bin"]);
  } finally {
    await cluster.stop();
  }
});
