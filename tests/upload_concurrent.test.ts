import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, readManifestJson, startCluster, writeRandomFile } from "./harness.ts";
import { assertVerifiedCopies, testUser } from "./upload_util.ts";

Deno.test("upload: 10 concurrent uploads by 10 users: every file present, correct and owned (6 servers, R=3)", async () => {
  const cluster = await startCluster({ partSize: "64KiB", files: { "op.bin": 10_000 } });
  const src = join(cluster.work, "src");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  try {
    const users = Array.from({ length: 10 }, (_, i) => testUser(cluster, `user${i}`));
    const names = users.map((_, i) => `file${i}.bin`);
    // From a part and a bit to five parts; file0 and file9 share their first part (same seed).
    for (const [i, name] of names.entries()) {
      await writeRandomFile(join(src, name), 70_000 + i * 30_000, i === 9 ? 100 : 100 + i);
    }
    const results = await Promise.all(
      users.map((user, i) =>
        cluster.fts(["upload", join(src, names[i]!), "--json"], { env: user.env })
      ),
    );
    const owners: string[] = [];
    for (const [i, result] of results.entries()) {
      assert.equal(result.code, 0, `${names[i]}: ${result.stderr}`);
      owners.push(JSON.parse(result.stdout).owner);
    }
    assert.equal(new Set(owners).size, 10);
    const manifest = await readManifestJson(cluster.dir);
    assert.deepEqual(Object.keys(manifest.files).sort(), [...names, "op.bin"].sort());
    for (const [i, name] of names.entries()) {
      const entry = manifest.files[name] as unknown as { owner: string };
      assert.equal(entry.owner, owners[i]);
      await assertVerifiedCopies(cluster, name, 3);
    }
    const fetches = await Promise.all(names.map((name) => cluster.fts(["fetch", name, dest])));
    for (const [i, fetched] of fetches.entries()) {
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, names[i]!), join(src, names[i]!));
    }
  } finally {
    await cluster.stop();
  }
});
