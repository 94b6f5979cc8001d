/**
 * What a quota counts, ManifestStore.publishedBytes(), in the file store and
 * in etcd: each owner's bytes kept in memory and brought up to date from the
 * changes since, not a walk of every entry per publish (which made each
 * publish under a quota cost time in proportion to the manifest: 1.05 s per
 * upload at 100,000 files in the file store, 5.9 s in etcd). Checked against
 * a walk after publishes, replaces, renames, deletes and owner-less entries
 * (as an older fts wrote them) made by another store on the same manifest
 * (another process), and across a compaction the reader did not see.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { contentIdOf, type FileEntry } from "../lib/state/manifest.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { type ManifestStore, publishedBytesByOwner } from "../lib/state/manifest_store.ts";
import { entryLine, layoutDocument, snapshotHeader } from "../lib/state/manifest_layout.ts";
import { seededRandom } from "./seeded_random.ts";

const OWNERS = ["ed25519:alice", "ed25519:bob", "operator"];

function _entry(name: string, size: number, owner: string): FileEntry {
  const parts = [{ digest: "ab".repeat(32), size, replicas: ["9001"] }];
  return {
    name,
    size,
    partSize: 1 << 20,
    contentId: contentIdOf(size, parts),
    owner,
    created: new Date(0).toISOString(),
    parts,
  };
}

/** Five first calls at once share one walk of `pages` pages. */
async function _oneWalk(store: ManifestStore, pages: number): Promise<void> {
  const counted = _countPages(store);
  const answers = await Promise.all(OWNERS.concat(OWNERS).map((o) => store.publishedBytes(o)));
  assert.equal(answers.length, 6);
  assert.equal(counted(), pages);
}

/** How many pages of summaries `store` is asked for from now on. */
function _countPages(store: ManifestStore): () => number {
  let pages = 0;
  const summaries = store.summaries.bind(store);
  store.summaries = (options) => {
    pages++;
    return summaries(options);
  };
  return () => pages;
}

async function _assertTally(reader: ManifestStore, step: string): Promise<void> {
  const walked = await publishedBytesByOwner(reader);
  for (const owner of [...OWNERS, "ed25519:nobody"]) {
    assert.equal(await reader.publishedBytes(owner), walked.get(owner) ?? 0, `${step}: ${owner}`);
  }
}

/** 200 random changes by `writer`; `reader` must count each owner's bytes as a walk does. */
async function _randomChanges(reader: ManifestStore, writer: ManifestStore, seed: number) {
  const random = seededRandom(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  const names = Array.from({ length: 12 }, (_, i) => `f${i}.bin`);
  await _assertTally(reader, "empty");
  const pages = _countPages(reader);
  for (let step = 0; step < 200; step++) {
    const name = pick(names);
    const size = 1 + Math.floor(random() * 10_000);
    const what = random();
    if (what < 0.5) {
      // A publish, or a replace (maybe by another owner: the tally follows the entry).
      await writer.change([name], () => ({ puts: [_entry(name, size, pick(OWNERS))], result: 0 }));
    } else if (what < 0.75) {
      await writer.change([name], () => ({ deletes: [name], result: 0 }));
    } else {
      const to = pick(names);
      await writer.change([name, to], (current) => {
        const entry = current.get(name)?.entry;
        if (!entry || current.has(to)) return { result: 0 };
        return { deletes: [name], puts: [{ ...entry, name: to }], result: 0 };
      });
    }
    if (step % 7 === 0) {
      const owner = pick(OWNERS);
      const except = pick(names);
      const walked = await publishedBytesByOwner(writer, except);
      assert.equal(await reader.publishedBytes(owner, except), walked.get(owner) ?? 0);
    }
    if (step % 5 === 0) await _assertTally(reader, `step ${step}`);
  }
  return pages;
}

Deno.test("publishedBytes in the file store: follows another process's changes, owner-less entries and a compaction; no walk per call", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-unit-tally-" });
  try {
    // An older fts's entry: no owner field (the operator's).
    // 1,500 entries more, so that the writer compacts only when told below.
    const { owner: _, ...ownerless } = _entry("old.bin", 777, "operator");
    const lines = [entryLine("old.bin", JSON.stringify(ownerless))];
    for (let i = 0; i < 1500; i++) {
      lines.push(entryLine(`s${i}`, JSON.stringify(_entry(`s${i}`, 5, "ed25519:bob"))));
    }
    await Deno.writeTextFile(join(dir, "manifest.json"), layoutDocument(snapshotHeader(1), lines));
    const snapshot = () =>
      Deno.readTextFile(join(dir, "manifest.json")).then((t) => t.slice(0, 80));
    const first = await snapshot();
    const reader = new FileManifestStore(dir);
    const writer = new FileManifestStore(dir);
    await _oneWalk(reader, 2);
    assert.equal(await reader.publishedBytes("operator"), 777);
    assert.equal(await reader.publishedBytes("ed25519:bob"), 1500 * 5);
    const pages = await _randomChanges(reader, writer, 7);
    // _randomChanges walked with publishedBytesByOwner, which pages too: count only the tally's.
    const walksBefore = pages();
    for (let i = 0; i < 20; i++) {
      await writer.change([`n${i}`], () => ({
        puts: [_entry(`n${i}`, 10, "ed25519:alice")],
        result: 0,
      }));
      await reader.publishedBytes("ed25519:alice");
    }
    assert.equal(pages(), walksBefore, "a publish walked the manifest");
    // Enough changes that the writer compacts and the reader no longer has them: it walks again.
    assert.equal(await snapshot(), first, "compacted too soon for this test");
    for (let i = 0; i < 1500; i++) {
      await writer.change(
        [`m${i}`],
        () => ({ puts: [_entry(`m${i}`, 1, "ed25519:bob")], result: 0 }),
      );
    }
    assert.notEqual(await snapshot(), first, "not compacted");
    await _assertTally(reader, "after a compaction");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "publishedBytes in etcd: follows another process's changes; no walk per call",
  ignore: missingTool("etcd"),
  async fn() {
    const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
    const reader = new EtcdCluster(etcd.endpoints.split(","), "tally");
    const writer = new EtcdCluster(etcd.endpoints.split(","), "tally");
    try {
      await _oneWalk(reader.manifest, 1);
      const pages = await _randomChanges(reader.manifest, writer.manifest, 11);
      const walksBefore = pages();
      for (let i = 0; i < 20; i++) {
        await writer.manifest.change([`n${i}`], () => ({
          puts: [_entry(`n${i}`, 10, "ed25519:alice")],
          result: 0,
        }));
        await reader.manifest.publishedBytes("ed25519:alice");
      }
      assert.equal(pages(), walksBefore, "a publish walked the manifest");
      // The fence key is no file.
      assert.equal((await reader.manifest.list()).entries.every((e) => e.entry.name !== ""), true);
      await _assertTally(reader.manifest, "end");
    } finally {
      reader.close();
      writer.close();
      await etcd.stop();
    }
  },
});
