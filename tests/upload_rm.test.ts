import assert from "node:assert/strict";
import { join } from "node:path";
import { PARTS_LOCK } from "../lib/state/manifest_store.ts";
import { openLocker } from "../lib/state/open_manifest_store.ts";
import {
  assertSameFile,
  FtsProcess,
  readManifestJson,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import {
  assertVerifiedCopies,
  storedCopies,
  sumCounter,
  testUser,
  waitUntil,
} from "./upload_util.ts";

const PART = 64 * 1024;

/** Digests of every part the manifest refers to. */
async function _referenced(dir: string): Promise<Set<string>> {
  const files = Object.values((await readManifestJson(dir)).files);
  return new Set(files.flatMap((f) => f.parts.map((p) => p.digest)));
}

Deno.test("rm: parts are freed on every instance unless another file uses them (6 servers, R=3)", async (t) => {
  const cluster = await startCluster({ partSize: "64KiB", files: { "op.bin": 100_000 } });
  const alice = testUser(cluster, "alice");
  const bob = testUser(cluster, "bob");
  const src = join(cluster.work, "src");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  try {
    await t.step("deleting one of two files that share parts keeps the shared ones", async () => {
      // a.bin and b.bin share their first 4 parts (same seed); the rest differs.
      await writeRandomFile(join(src, "a.bin"), 6 * PART, 41);
      await writeRandomFile(join(src, "b.bin"), 4 * PART, 41);
      await Deno.writeFile(join(src, "b.bin"), crypto.getRandomValues(new Uint8Array(30_000)), {
        append: true,
      });
      for (const [name, user] of [["a.bin", alice], ["b.bin", bob]] as const) {
        const up = await cluster.fts(["upload", join(src, name)], { env: user.env });
        assert.equal(up.code, 0, up.stderr);
      }
      const files = (await readManifestJson(cluster.dir)).files;
      const aDigests = files["a.bin"]!.parts.map((p) => p.digest);
      const bDigests = new Set(files["b.bin"]!.parts.map((p) => p.digest));
      assert.equal(aDigests.filter((d) => bDigests.has(d)).length, 4);

      const rm = await cluster.fts(["rm", "a.bin"], { env: alice.env });
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stdout, /removed a\.bin: 2 parts no other file uses were freed \(6 stored/);
      const copies = await storedCopies(cluster.dir);
      for (const digest of aDigests) {
        if (bDigests.has(digest)) {
          assert.ok(copies.get(digest)?.length === 3, `shared ${digest} lost copies`);
        } else {
          assert.equal(copies.get(digest), undefined, `${digest} still on ${copies.get(digest)}`);
        }
      }
      await assertVerifiedCopies(cluster, "b.bin", 3);
      const fetched = await cluster.fts(["fetch", "b.bin", dest]);
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, "b.bin"), join(src, "b.bin"));

      const rmB = await cluster.fts(["rm", "b.bin"], { env: bob.env });
      assert.equal(rmB.code, 0, rmB.stderr);
      // Only what the remaining files use is still stored, anywhere.
      assert.deepEqual(
        new Set((await storedCopies(cluster.dir)).keys()),
        await _referenced(cluster.dir),
      );
    });

    await t.step(
      "rm racing an upload of the same parts never leaves the manifest pointing at missing parts",
      async () => {
        await writeRandomFile(join(src, "c.bin"), 5 * PART, 42);
        for (let round = 0; round < 3; round++) {
          const up = await cluster.fts(["upload", join(src, "c.bin")], { env: alice.env });
          assert.equal(up.code, 0, up.stderr);
          const [rm, other] = await Promise.all([
            cluster.fts(["rm", "c.bin"], { env: alice.env }),
            cluster.fts(["upload", join(src, "c.bin"), "--as", `d${round}.bin`], { env: bob.env }),
          ]);
          assert.equal(rm.code, 0, rm.stderr);
          assert.equal(other.code, 0, other.stderr);
          await assertVerifiedCopies(cluster, `d${round}.bin`, 3);
        }
        const stored = await storedCopies(cluster.dir);
        for (const digest of await _referenced(cluster.dir)) {
          assert.ok((stored.get(digest)?.length ?? 0) >= 3, `${digest} has too few copies`);
        }
      },
    );

    await t.step(
      "a copy freed between storing and publishing is sent again (MISSING_PARTS, then retry)",
      async () => {
        const parts = 4;
        await writeRandomFile(join(src, "e.bin"), parts * PART, 43);
        const storedBefore = await sumCounter(cluster, "partsStored");
        const known = new Set((await storedCopies(cluster.dir)).keys());
        // Holding the parts lock stops the publish until a copy is gone.
        const upload = await openLocker(cluster.dir).withLock(PARTS_LOCK, async () => {
          const upload = new FtsProcess(["upload", join(src, "e.bin"), "--data", cluster.dir], {
            env: alice.env,
          });
          await waitUntil(
            "every copy is stored",
            async () => (await sumCounter(cluster, "partsStored")) - storedBefore === parts * 3,
          );
          const [digest, holders] = [...(await storedCopies(cluster.dir)).entries()].find(([d]) =>
            !known.has(d)
          )!;
          await Deno.remove(storedPartPath(cluster.dir, holders[0]!, digest));
          return upload;
        });
        const result = await upload.result();
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, /publish refused, sending missing copies again: .*not stored/);
        await assertVerifiedCopies(cluster, "e.bin", 3);
      },
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("mv and rm wait for the parts lock, so a repair's walk under it sees every name stay put (6 servers, R=3)", async () => {
  const cluster = await startCluster({ partSize: "64KiB", files: {} });
  const alice = testUser(cluster, "alice");
  const src = join(cluster.work, "src");
  try {
    await writeRandomFile(join(src, "m.bin"), 2 * PART, 44);
    const up = await cluster.fts(["upload", join(src, "m.bin")], { env: alice.env });
    assert.equal(up.code, 0, up.stderr);
    const steps: [string[], string][] = [[["mv", "m.bin", "n.bin"], "m.bin"], [
      ["rm", "n.bin"],
      "n.bin",
    ]];
    for (const [args, gone] of steps) {
      const done = await openLocker(cluster.dir).withLock(PARTS_LOCK, async () => {
        const change = new FtsProcess([...args, "--data", cluster.dir], { env: alice.env });
        // Long enough for an mv or rm that ignored the lock to finish several times over.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const files = (await readManifestJson(cluster.dir)).files;
        assert.ok(
          Object.hasOwn(files, gone),
          `${args.join(" ")} changed the manifest under the lock`,
        );
        return change;
      });
      const result = await done.result();
      assert.equal(result.code, 0, result.stderr);
      assert.ok(!Object.hasOwn((await readManifestJson(cluster.dir)).files, gone));
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("rm, mv: hung instances (SIGSTOP) cost the handshake timeout each, not the reply timeout", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 1, files: { "op.bin": 1000 } });
  const alice = testUser(cluster, "alice");
  const src = join(cluster.work, "src", "h.bin");
  await Deno.writeFile(src, new Uint8Array(3000).fill(5));
  const hung = cluster.ports.slice(1);
  const pids = await Promise.all(
    hung.map(async (port) =>
      Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)))
    ),
  );
  try {
    const up = await cluster.fts(["upload", src], { env: alice.env });
    assert.equal(up.code, 0, up.stderr);
    for (const pid of pids) Deno.kill(pid, "SIGSTOP");
    // Servers are tried in random order (the look-up first, then the change): each hung one
    // met cost 30 s in the change, 66 s seen for one mv; now 3 s, 9-12 s seen.
    for (const command of [["mv", "h.bin", "g.bin"], ["rm", "g.bin"]]) {
      const started = Date.now();
      const result = await cluster.fts(command, { env: alice.env });
      assert.equal(result.code, 0, result.stderr);
      const took = Date.now() - started;
      assert.ok(took < 25_000, `${command[0]} took ${took} ms with 3 of 4 instances hung`);
    }
  } finally {
    for (const pid of pids) Deno.kill(pid, "SIGCONT");
    await cluster.stop();
  }
});
