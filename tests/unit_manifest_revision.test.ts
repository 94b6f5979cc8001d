/**
 * Unit tests of the file store's revision read from the files' headers
 * (lib/state/manifest_revision.ts): a store that has read no entry answers
 * revision() without an index, and must agree with one that has.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { contentIdOf, type FileEntry, OPERATOR_OWNER } from "../lib/state/manifest.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { readRevision } from "../lib/state/manifest_revision.ts";
import { withTempDir } from "./unit_helpers.ts";

function entry(name: string, seed = 0): FileEntry {
  const parts = [{ digest: (seed % 256).toString(16).padStart(2, "0").repeat(32), size: 10 }];
  const withReplicas = parts.map((part) => ({ ...part, replicas: ["9001"] }));
  return {
    name,
    size: 10,
    partSize: 4096,
    contentId: contentIdOf(10, parts),
    owner: OPERATOR_OWNER,
    created: new Date(0).toISOString(),
    parts: withReplicas,
  };
}

const journalPath = (dir: string) => join(dir, "manifest.journal");
const snapshotPath = (dir: string) => join(dir, "manifest.json");

async function put(store: FileManifestStore, ...entries: FileEntry[]): Promise<number> {
  const outcome = await store.change(entries.map((e) => e.name), () => ({
    puts: entries,
    result: undefined,
  }));
  return outcome.revision;
}

/** The revision from the headers alone (a new store) and from an index (after a get). */
async function bothRevisions(dir: string): Promise<[number | undefined, number]> {
  const headers = await new FileManifestStore(dir).revision();
  const indexed = new FileManifestStore(dir);
  await indexed.get("none");
  return [headers, await indexed.revision()];
}

/** readRevision() of the files in `dir`, without a store. */
async function readFiles(dir: string) {
  const open = (path: string) => Deno.open(path, { read: true }).catch(() => undefined);
  const files = { snapshot: await open(snapshotPath(dir)), journal: await open(journalPath(dir)) };
  try {
    return await readRevision(files);
  } finally {
    files.snapshot?.close();
    files.journal?.close();
  }
}

Deno.test("revision() without an index: absent manifest, snapshot only, snapshot and journal", async () => {
  await withTempDir("fts-unit-revision-", async (dir) => {
    assert.deepEqual(await bothRevisions(dir), [0, 0]);
    const writer = new FileManifestStore(dir);
    // The first change is folded into a snapshot at once: its journal is empty.
    await put(writer, ...Array.from({ length: 20 }, (_, i) => entry(`base-${i}`, i)));
    assert.equal((await Deno.stat(journalPath(dir))).size, 0);
    assert.deepEqual(await bothRevisions(dir), [1, 1]);
    const reader = new FileManifestStore(dir);
    assert.equal(await reader.revision(), 1);
    for (let i = 0; i < 3; i++) await put(writer, entry(`more-${i}`, i));
    assert.ok((await Deno.stat(journalPath(dir))).size > 0);
    assert.deepEqual(await bothRevisions(dir), [4, 4]);
    // The same reader follows changes appended after its last look.
    assert.equal(await reader.revision(), 4);
    await put(writer, entry("late.bin"));
    assert.equal(await reader.revision(), 5);
    assert.equal((await readFiles(dir))?.revision, 5);
  });
});

Deno.test("revision() without an index ignores a torn journal tail", async () => {
  await withTempDir("fts-unit-revision-", async (dir) => {
    const writer = new FileManifestStore(dir);
    await put(writer, ...Array.from({ length: 20 }, (_, i) => entry(`base-${i}`, i)));
    await put(writer, entry("more.bin"));
    const whole = await readFiles(dir);
    const torn = `{"generation":3,"deletes":[],"puts":{\n"torn.bin":{"name":"to`;
    await Deno.writeTextFile(journalPath(dir), torn, { append: true });
    assert.deepEqual(await bothRevisions(dir), [2, 2]);
    const mark = await readFiles(dir);
    assert.equal(mark?.revision, 2);
    // The torn change is not counted as read: the next look starts at it again.
    assert.equal(mark?.journalEnd, whole?.journalEnd);
    // A whole header with no closing line yet is torn too.
    await Deno.writeTextFile(journalPath(dir), `\n}}\n{"generation":4,"deletes":[],"puts":{\n`, {
      append: true,
    });
    assert.deepEqual(await bothRevisions(dir), [3, 3]);
  });
});

Deno.test("revision() without an index skips journal changes at or below the snapshot's generation", async () => {
  await withTempDir("fts-unit-revision-", async (dir) => {
    const writer = new FileManifestStore(dir);
    await put(writer, ...Array.from({ length: 20 }, (_, i) => entry(`base-${i}`, i)));
    await put(writer, entry("more.bin"));
    const stale = await Deno.readTextFile(journalPath(dir));
    for (let i = 0; (await Deno.stat(journalPath(dir))).size > 0; i++) {
      await put(writer, entry(`fold-${i}`, i));
    }
    const generation = await writer.revision();
    // The old journal back, as if the writer died between the two renames.
    await Deno.writeTextFile(journalPath(dir), stale);
    assert.deepEqual(await bothRevisions(dir), [generation, generation]);
  });
});

Deno.test("revision() leaves what only the index can tell to the index", async () => {
  await withTempDir("fts-unit-revision-", async (dir) => {
    // A one-line snapshot, as an older fts wrote it.
    const one = entry("old.bin");
    await Deno.writeTextFile(
      snapshotPath(dir),
      JSON.stringify({
        format: "fts-manifest",
        version: 1,
        generation: 7,
        files: { [one.name]: one },
      }),
    );
    assert.equal(await readFiles(dir), undefined);
    assert.deepEqual(await bothRevisions(dir), [7, 7]);
    // A line-layout snapshot without its closing line is torn: the index refuses it.
    const writer = new FileManifestStore(dir);
    await put(writer, entry("new.bin"));
    const text = await Deno.readTextFile(snapshotPath(dir));
    await Deno.writeTextFile(snapshotPath(dir), text.slice(0, -3));
    assert.equal(await readFiles(dir), undefined);
    await assert.rejects(new FileManifestStore(dir).revision(), SyntaxError);
    // A bad change header, likewise.
    await Deno.writeTextFile(snapshotPath(dir), text);
    await Deno.writeTextFile(journalPath(dir), `{"generation":"x"}\n}}\n`);
    assert.equal(await readFiles(dir), undefined);
    await assert.rejects(new FileManifestStore(dir).revision(), SyntaxError);
  });
});
