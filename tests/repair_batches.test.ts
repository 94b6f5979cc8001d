/**
 * A repair records its replica changes in batches of NAMES_PER_CHANGE
 * entries (one etcd transaction may hold only so many operations): with more
 * files than one batch, every entry still ends up listing live copies only.
 */
import assert from "node:assert/strict";
import { NAMES_PER_CHANGE } from "../lib/ops/repair_manifest.ts";
import { readManifestJson, startCluster } from "./harness.ts";

const FILES = NAMES_PER_CHANGE + 12;

Deno.test(`repair: ${FILES} files with a copy on a killed instance are all re-listed, in batches (R=2, 3 servers)`, async () => {
  const files: Record<string, number> = {};
  for (let i = 0; i < FILES; i++) files[`f${String(i).padStart(3, "0")}.bin`] = 5000 + i;
  const cluster = await startCluster({ servers: 3, replicas: 2, files });
  try {
    const killed = String(cluster.ports[0]);
    await cluster.kill(cluster.ports[0]!);
    const repaired = await cluster.fts(["repair", "--unused-after", "0"]);
    assert.equal(repaired.code, 0, repaired.stderr);
    const { files: entries } = await readManifestJson(cluster.dir);
    const names = Object.keys(entries);
    assert.equal(names.length, FILES);
    let moved = 0;
    for (const name of names) {
      for (const part of entries[name]!.parts) {
        assert.equal(part.replicas.length, 2, name);
        assert.ok(!part.replicas.includes(killed), `${name} still lists ${killed}`);
      }
      moved++;
    }
    assert.equal(moved, FILES);
  } finally {
    await cluster.stop();
  }
});
