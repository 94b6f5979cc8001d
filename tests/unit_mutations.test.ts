/**
 * An instance serves entries and takes signed changes through one manifest
 * store, which passes stored content ids on unchecked (a serving store): a
 * change must still judge an entry by the content its parts make.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ephemeralIdentity } from "../lib/auth/identity.ts";
import { signRequest } from "../lib/auth/signed_request.ts";
import { fileMutationsContext, Mutations } from "../lib/server/mutations.ts";
import { loadOrCreateClusterId } from "../lib/state/cluster_id.ts";
import { ensureConfig } from "../lib/state/config.ts";
import { contentIdOf } from "../lib/state/manifest.ts";
import { entryLine, layoutDocument, snapshotHeader } from "../lib/state/manifest_layout.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";

Deno.test("Mutations judge a delete by the content an entry's parts make, not by its stored content id", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-unit-mutations-" });
  try {
    await ensureConfig(dir, { basePort: 9001, servers: 1, replicas: 1 });
    const owner = await ephemeralIdentity();
    const parts = [{ digest: "ab".repeat(32), size: 1000, replicas: ["9001"] }];
    const made = contentIdOf(1000, parts);
    const stale = "0".repeat(64);
    const entry = {
      name: "f.bin",
      size: 1000,
      partSize: 4096,
      contentId: stale,
      owner: owner.owner,
      created: "",
      parts,
    };
    await Deno.writeTextFile(
      join(dir, "manifest.json"),
      layoutDocument(snapshotHeader(1), [entryLine("f.bin", JSON.stringify(entry))]),
    );
    const store = openManifestStore(dir, { serving: true });
    const mutations = new Mutations(fileMutationsContext(dir, store));
    const cluster = await loadOrCreateClusterId(dir);
    const signedFor = (contentId: string) =>
      signRequest(owner, { op: "file.delete" as const, name: "f.bin", cluster, contentId });

    // The serving store passes the stored id on as it is...
    assert.equal((await store.get("f.bin"))!.entry.contentId, stale);
    // ...but a delete signed for that id is refused, and one signed for the parts goes through.
    await assert.rejects(
      mutations.remove(await signedFor(stale)),
      /changed since the request was signed/,
    );
    await mutations.remove(await signedFor(made));
    assert.equal(await store.get("f.bin"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
