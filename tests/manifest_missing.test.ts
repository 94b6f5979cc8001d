/**
 * A data directory whose part stores hold parts but whose manifest.json is
 * gone must never be read as "no files": repair, status, preload and upload refuse,
 * saying why, and delete nothing; `repair --new-cluster` is the operator's way out.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists } from "../lib/base/fs_util.ts";
import { readManifestJson, startCluster, storedPartPath } from "./harness.ts";

const TWO_DAYS_AGO = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);

Deno.test(
  "manifest.json deleted with parts stored (3 servers, R=2): repair, status, preload and upload refuse, no part is deleted",
  async () => {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      files: { "a.bin": 700 * 1024, "b.bin": 300 * 1024 },
    });
    try {
      const manifest = await readManifestJson(cluster.dir);
      const copies = Object.values(manifest.files).flatMap((entry) =>
        entry.parts.flatMap((part) =>
          part.replicas.map((id) => storedPartPath(cluster.dir, id, part.digest))
        )
      );
      // Old enough that a repair which thinks them unused deletes them at once.
      for (const copy of copies) await Deno.utime(copy, TWO_DAYS_AGO, TWO_DAYS_AGO);
      await Deno.remove(join(cluster.dir, "manifest.json"));
      await Deno.remove(join(cluster.dir, "manifest.journal")).catch(() => {});

      for (
        const args of [
          ["repair", "--unused-after", "1h"],
          ["status"],
          ["repair", "--dry-run"],
          ["ls"],
        ]
      ) {
        const result = await cluster.fts(args);
        assert.notEqual(result.code, 0, `${args.join(" ")} succeeded: ${result.stdout}`);
        assert.match(result.stderr, /manifest\.json is missing/, args.join(" "));
        assert.match(result.stderr, /--new-cluster/);
        assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      }
      for (const copy of copies) assert.ok(await exists(copy), `${copy} was deleted`);
      // Nor may a preload start a new manifest in the lost one's place (its
      // files' parts would then be unused, and go at the next repair).
      const source = join(cluster.work, "src", "a.bin");
      const preload = await cluster.fts(["preload", source, "--as", "fresh.bin"]);
      assert.equal(preload.code, 1, preload.stderr);
      assert.match(preload.stderr, /manifest\.json is missing/);
      assert.ok(!(await exists(join(cluster.dir, "manifest.json"))), "preload wrote a manifest");
      // An upload is refused by the instances, and says why, not "cannot reach any server".
      const upload = await cluster.fts(["upload", source, "--as", "up.bin", "--operator"]);
      assert.equal(upload.code, 1, upload.stderr);
      assert.match(upload.stderr, /manifest\.json is missing/);

      // The operator says it is a new cluster: the parts are now unused, and go.
      const fresh = await cluster.fts(["repair", "--new-cluster", "--unused-after", "1h"]);
      assert.equal(fresh.code, 0, fresh.stderr);
      for (const copy of copies) assert.ok(!(await exists(copy)), `${copy} was kept`);
      const status = await cluster.fts(["status"]);
      assert.equal(status.code, 0, status.stderr);
    } finally {
      await cluster.stop();
    }
  },
);
