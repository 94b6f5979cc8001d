/**
 * Unit tests of the file manifest store (lib/state/file_manifest_store.ts):
 * compare-and-swap changes, the journal's crash rules, compaction, snapshots
 * written by older fts, paging and watching, and the revision read from the
 * files' headers (manifest_revision.ts) by a store that has read no entry.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { COMPACT_JOURNAL_SHARE, FileManifestStore } from "../lib/state/file_manifest_store.ts";
import {
  type ManifestEvent,
  MAX_CHANGE_ATTEMPTS,
  MAX_NAMES_PER_READ,
} from "../lib/state/manifest_store.ts";
import { readRevision } from "../lib/state/manifest_revision.ts";
import { referencedAmong } from "../lib/state/part_gc.ts";
import { entryLine, layoutDocument, snapshotHeader } from "../lib/state/manifest_layout.ts";
import { putEntries, readManifest, testEntry } from "./manifest_util.ts";
import { withTempDir } from "./unit_helpers.ts";

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withTempDir("fts-unit-manifest-store-", fn);
}

const journalPath = (dir: string) => join(dir, "manifest.journal");
const snapshotPath = (dir: string) => join(dir, "manifest.json");

/** A store whose journal holds changes: 20 entries in the snapshot, then `more` one-entry changes. */
async function withJournal(dir: string, more: number): Promise<FileManifestStore> {
  const store = new FileManifestStore(dir);
  await putEntries(store, ...Array.from({ length: 20 }, (_, i) => testEntry(`base-${i}`, i)));
  for (let i = 0; i < more; i++) await putEntries(store, testEntry(`more-${i}`, i));
  if (more > 0) assert.ok((await Deno.stat(journalPath(dir))).size > 0, "the journal is empty");
  return store;
}

Deno.test("FileManifestStore.change() runs the function again when another writer changed its entries", async () => {
  await withDir(async (dir) => {
    const store = new FileManifestStore(dir);
    const other = new FileManifestStore(dir);
    await putEntries(store, testEntry("a.bin", 1));
    let runs = 0;
    const outcome = await store.change(["a.bin"], async (current) => {
      runs++;
      if (runs === 1) await putEntries(other, testEntry("a.bin", 2));
      const seen = current.get("a.bin")!.entry;
      return { puts: [{ ...seen, owner: "me" }], result: seen.parts[0]!.digest };
    });
    assert.equal(runs, 2);
    assert.equal(outcome.result, "02".repeat(32), "the retry did not see the other change");
    assert.equal(outcome.revision, 3);
    assert.equal((await other.get("a.bin"))!.entry.owner, "me");
  });
});

Deno.test("FileManifestStore.getMany(): entries in the order asked, undefined where absent, from snapshot and journal; more than MAX_NAMES_PER_READ refused", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 3);
    const other = new FileManifestStore(dir);
    const names = ["more-2", "nope", "base-7", "more-0", "base-0"];
    const found = await other.getMany(names);
    assert.deepEqual(found.map((f) => f?.entry.name), [
      "more-2",
      undefined,
      "base-7",
      "more-0",
      "base-0",
    ]);
    for (const [i, name] of names.entries()) {
      assert.deepEqual(found[i], await store.get(name), name);
    }
    assert.deepEqual(await other.getMany([]), []);
    await assert.rejects(
      other.getMany(Array.from({ length: MAX_NAMES_PER_READ + 1 }, (_, i) => `n${i}`)),
      RangeError,
    );
  });
});

Deno.test("FileManifestStore.change() gives up after MAX_CHANGE_ATTEMPTS conflicting changes", async () => {
  await withDir(async (dir) => {
    const store = new FileManifestStore(dir);
    const other = new FileManifestStore(dir);
    await putEntries(store, testEntry("a.bin"));
    let runs = 0;
    await assert.rejects(
      store.change(["a.bin"], async () => {
        runs++;
        await putEntries(other, testEntry("a.bin", runs));
        return { puts: [testEntry("a.bin", 200)], result: undefined };
      }),
      /other changes to them came first/,
    );
    assert.equal(runs, MAX_CHANGE_ATTEMPTS);
    assert.equal(
      (await store.get("a.bin"))!.entry.parts[0]!.digest,
      (runs % 256).toString(16).padStart(2, "0").repeat(32),
    );
  });
});

Deno.test("FileManifestStore.change() refuses to touch an entry it did not name", async () => {
  await withDir(async (dir) => {
    const store = new FileManifestStore(dir);
    await assert.rejects(
      store.change(["a.bin"], () => ({ puts: [testEntry("b.bin")], result: undefined })),
      TypeError,
    );
    assert.equal(await store.revision(), 0);
  });
});

Deno.test("FileManifestStore: a torn last journal change is ignored, then cut off by the next writer", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 2);
    const revision = await store.revision();
    const torn = `{"generation":${revision + 1},"deletes":[],"puts":{\n"torn.bin":{"name":"to`;
    await Deno.writeTextFile(journalPath(dir), torn, { append: true });
    const reader = new FileManifestStore(dir);
    assert.equal(await reader.revision(), revision);
    assert.equal(await reader.get("torn.bin"), undefined);
    assert.equal(await putEntries(new FileManifestStore(dir), testEntry("next.bin")), revision + 1);
    assert.ok(!(await Deno.readTextFile(journalPath(dir))).includes("torn.bin"));
    const manifest = await readManifest(dir);
    assert.equal(manifest.generation, revision + 1);
    assert.equal(Object.keys(manifest.files).length, 23);
    assert.ok((await reader.get("next.bin"))?.entry);
  });
});

Deno.test("FileManifestStore: journal changes already in the snapshot are skipped (crash before the journal was emptied)", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 1);
    const stale = await Deno.readTextFile(journalPath(dir));
    // Enough changes to fold the journal into the snapshot.
    for (let i = 0; (await Deno.stat(journalPath(dir))).size > 0; i++) {
      await putEntries(store, testEntry(`fold-${i}`, i));
    }
    const expected = await readManifest(dir);
    // The old journal back, as if the writer died between the two renames.
    await Deno.writeTextFile(journalPath(dir), stale);
    const reader = new FileManifestStore(dir);
    assert.equal(await reader.revision(), expected.generation);
    assert.deepEqual(await readManifest(dir), expected);
    assert.equal(await putEntries(reader, testEntry("after.bin")), expected.generation + 1);
    assert.ok((await new FileManifestStore(dir).get("after.bin"))?.entry);
  });
});

Deno.test("FileManifestStore compacts the journal into a one-entry-a-line snapshot", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 0);
    const snapshotBytes = (await Deno.stat(snapshotPath(dir))).size;
    let changes = 0;
    let journalBytes = 0;
    while (true) {
      await putEntries(store, testEntry(`c-${changes}`, changes));
      changes++;
      const size = (await Deno.stat(journalPath(dir))).size;
      if (size === 0) break;
      journalBytes = size;
    }
    // Constant cost on average: many changes per compaction, and only once
    // the journal passed its share of the snapshot.
    assert.ok(changes > 5, `compacted after ${changes} changes`);
    assert.ok(journalBytes <= COMPACT_JOURNAL_SHARE * snapshotBytes);
    assert.ok(journalBytes * (changes / (changes - 1)) > COMPACT_JOURNAL_SHARE * snapshotBytes);
    const text = await Deno.readTextFile(snapshotPath(dir));
    const raw = JSON.parse(text);
    assert.equal(raw.generation, 1 + changes);
    assert.equal(Object.keys(raw.files).length, 20 + changes);
    assert.equal(text.trimEnd().split("\n").length, 20 + changes + 2);
    assert.deepEqual((await new FileManifestStore(dir).get("c-0"))!.entry, testEntry("c-0", 0));
  });
});

Deno.test("FileManifestStore reads a one-line snapshot from an older fts and rewrites it on the next change", async () => {
  await withDir(async (dir) => {
    const files = {
      "a.bin": testEntry("a.bin", 1),
      "b.bin": testEntry("b.bin", 2),
      "é 文.bin": testEntry("é 文.bin", 4),
    };
    await Deno.writeTextFile(
      snapshotPath(dir),
      JSON.stringify({ format: "fts-manifest", version: 1, generation: 5, files }),
    );
    const store = new FileManifestStore(dir);
    assert.equal(await store.revision(), 5);
    assert.deepEqual((await store.get("b.bin"))!.entry, files["b.bin"]);
    assert.equal(await putEntries(store, testEntry("c.bin", 3)), 6);
    const text = await Deno.readTextFile(snapshotPath(dir));
    assert.equal(text.trimEnd().split("\n").length, 4 + 2);
    assert.deepEqual(Object.keys((await readManifest(dir)).files).sort(), [
      "a.bin",
      "b.bin",
      "c.bin",
      "é 文.bin",
    ]);
    // Both the writer's index and a fresh one find the entries in the new layout.
    assert.deepEqual((await store.get("é 文.bin"))!.entry, files["é 文.bin"]);
    assert.deepEqual((await new FileManifestStore(dir).get("é 文.bin"))!.entry, files["é 文.bin"]);
  });
});

Deno.test("FileManifestStore: changes over a snapshot in name order, and over one a hand edit put out of order with a name twice", async () => {
  for (const order of [["a", "b", "c", "e"], ["c", "a", "e", "b", "a"]]) {
    await withDir(async (dir) => {
      // The value of a name's last line wins, as JSON.parse of the file would have it.
      const lines = order.map((name, i) =>
        entryLine(`${name}.bin`, JSON.stringify(testEntry(`${name}.bin`, i)))
      );
      await Deno.writeTextFile(snapshotPath(dir), layoutDocument(snapshotHeader(3), lines));
      const store = new FileManifestStore(dir);
      assert.deepEqual(
        (await store.get("a.bin"))!.entry,
        testEntry("a.bin", order.lastIndexOf("a")),
      );
      const names = async (from: FileManifestStore) =>
        (await from.summaries({ limit: 100 })).summaries.map((summary) => summary.name);
      assert.deepEqual(await names(store), ["a.bin", "b.bin", "c.bin", "e.bin"]);
      await store.change(["b.bin", "d.bin", "0.bin"], () => ({
        puts: [testEntry("d.bin", 7), testEntry("0.bin", 8)],
        deletes: ["b.bin"],
        result: undefined,
      }));
      await store.change(["e.bin"], () => ({ deletes: ["e.bin"], result: undefined }));
      await putEntries(store, testEntry("e.bin", 9), testEntry("c.bin", 10));
      const expected = ["0.bin", "a.bin", "c.bin", "d.bin", "e.bin"];
      const fresh = new FileManifestStore(dir);
      for (const reader of [store, fresh]) {
        assert.deepEqual(await names(reader), expected);
        assert.equal(await reader.get("b.bin"), undefined);
        assert.deepEqual((await reader.get("e.bin"))!.entry, testEntry("e.bin", 9));
        assert.deepEqual((await reader.get("c.bin"))!.entry, testEntry("c.bin", 10));
      }
    });
  }
});

Deno.test("FileManifestStore.list() pages through the entries in name order", async () => {
  await withDir(async (dir) => {
    const store = new FileManifestStore(dir);
    const names = Array.from({ length: 25 }, (_, i) => `f-${String(i).padStart(2, "0")}`);
    await putEntries(store, ...[...names].reverse().map((name, i) => testEntry(name, i)));
    const seen: string[] = [];
    const pages: boolean[] = [];
    let after: string | undefined;
    do {
      const page = await store.list(after === undefined ? { limit: 10 } : { after, limit: 10 });
      seen.push(...page.entries.map((found) => found.entry.name));
      pages.push(page.more);
      after = page.entries.at(-1)?.entry.name;
    } while (pages.at(-1));
    assert.deepEqual(seen, names);
    assert.deepEqual(pages, [true, true, false]);
  });
});

Deno.test("FileManifestStore.summaries() pages like list() and shows each entry's listed fields", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 3);
    const listed = (await store.list({ limit: 100 })).entries.map(({ entry: e }) => ({
      name: e.name,
      size: e.size,
      parts: e.parts.length,
      owner: e.owner,
      created: e.created,
    }));
    const page = await store.summaries({ limit: 7 });
    assert.deepEqual(page.summaries, listed.slice(0, 7));
    assert.equal(page.more, true);
    assert.equal(page.revision, await store.revision());
    const rest = await store.summaries({ after: page.summaries.at(-1)!.name, limit: 100 });
    assert.deepEqual(rest.summaries, listed.slice(7));
    assert.equal(rest.more, false);
  });
});

Deno.test("FileManifestStore.watch() reports each change after a revision", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 0);
    const from = await store.revision();
    const writer = new FileManifestStore(dir);
    const abort = new AbortController();
    const events: ManifestEvent[] = [];
    const watching = (async () => {
      for await (const event of store.watch(from, abort.signal)) {
        events.push(event);
        if (events.length === 2) abort.abort();
      }
    })();
    await putEntries(writer, testEntry("w1.bin"));
    await writer.change(["base-0"], () => ({ deletes: ["base-0"], result: undefined }));
    await watching;
    assert.deepEqual(events, [
      { type: "change", revision: from + 1, puts: ["w1.bin"], deletes: [] },
      { type: "change", revision: from + 2, puts: [], deletes: ["base-0"] },
    ]);
  });
});

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
  await withDir(async (dir) => {
    assert.deepEqual(await bothRevisions(dir), [0, 0]);
    const writer = new FileManifestStore(dir);
    // The first change is folded into a snapshot at once: its journal is empty.
    await putEntries(writer, ...Array.from({ length: 20 }, (_, i) => testEntry(`base-${i}`, i)));
    assert.equal((await Deno.stat(journalPath(dir))).size, 0);
    assert.deepEqual(await bothRevisions(dir), [1, 1]);
    const reader = new FileManifestStore(dir);
    assert.equal(await reader.revision(), 1);
    for (let i = 0; i < 3; i++) await putEntries(writer, testEntry(`more-${i}`, i));
    assert.ok((await Deno.stat(journalPath(dir))).size > 0);
    assert.deepEqual(await bothRevisions(dir), [4, 4]);
    // The same reader follows changes appended after its last look.
    assert.equal(await reader.revision(), 4);
    await putEntries(writer, testEntry("late.bin"));
    assert.equal(await reader.revision(), 5);
    assert.equal((await readFiles(dir))?.revision, 5);
  });
});

Deno.test("revision() without an index ignores a torn journal tail", async () => {
  await withDir(async (dir) => {
    const writer = new FileManifestStore(dir);
    await putEntries(writer, ...Array.from({ length: 20 }, (_, i) => testEntry(`base-${i}`, i)));
    await putEntries(writer, testEntry("more.bin"));
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
  await withDir(async (dir) => {
    const writer = new FileManifestStore(dir);
    await putEntries(writer, ...Array.from({ length: 20 }, (_, i) => testEntry(`base-${i}`, i)));
    await putEntries(writer, testEntry("more.bin"));
    const stale = await Deno.readTextFile(journalPath(dir));
    for (let i = 0; (await Deno.stat(journalPath(dir))).size > 0; i++) {
      await putEntries(writer, testEntry(`fold-${i}`, i));
    }
    const generation = await writer.revision();
    // The old journal back, as if the writer died between the two renames.
    await Deno.writeTextFile(journalPath(dir), stale);
    assert.deepEqual(await bothRevisions(dir), [generation, generation]);
  });
});

Deno.test("revision() leaves what only the index can tell to the index", async () => {
  await withDir(async (dir) => {
    // A one-line snapshot, as an older fts wrote it.
    const one = testEntry("old.bin");
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
    await putEntries(writer, testEntry("new.bin"));
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

Deno.test("referencedAmong(): the candidates some entry uses, from snapshot and journal", async () => {
  await withDir(async (dir) => {
    const store = await withJournal(dir, 3);
    const digest = (seed: number) => testEntry("x", seed).parts[0]!.digest;
    // base-0..19 use seeds 0..19, more-0..2 seeds 0..2: 200 is used by none.
    const candidates = new Set([digest(5), digest(200), digest(19)]);
    assert.deepEqual(
      [...await referencedAmong(store, candidates)].sort(),
      [digest(19), digest(5)].sort(),
    );
    assert.deepEqual([...await referencedAmong(store, new Set([digest(200)]))], []);
  });
});

Deno.test("referencedAmong() over a hand-edited snapshot: escaped and spaced digests count, a digest in a name does not", async () => {
  await withDir(async (dir) => {
    const digest = (seed: number) => testEntry("x", seed).parts[0]!.digest;
    // a.bin's digest written with a \u escape for its first digit, b.bin's with spaces
    // around it, and c.bin named after digest(3) without using it.
    const a = JSON.stringify(testEntry("a.bin", 1)).replace(
      `"${digest(1)}"`,
      () => `"\\u00${digest(1).charCodeAt(0).toString(16)}${digest(1).slice(1)}"`,
    );
    const b = JSON.stringify(testEntry("b.bin", 2)).replace(
      `"digest":"${digest(2)}"`,
      `"digest" : "${digest(2)}" `,
    );
    const cName = `${digest(3)}.bin`;
    const lines = [entryLine("a.bin", a), entryLine("b.bin", b)];
    lines.push(entryLine(cName, JSON.stringify(testEntry(cName, 4))));
    await Deno.writeTextFile(snapshotPath(dir), layoutDocument(snapshotHeader(1), lines));
    const store = new FileManifestStore(dir);
    assert.ok(a.includes("\\u00"), a);
    assert.deepEqual((await store.get("a.bin"))!.entry.parts[0]!.digest, digest(1));
    const candidates = new Set([digest(1), digest(2), digest(3), digest(4), digest(5)]);
    assert.deepEqual(
      [...await referencedAmong(store, candidates)].sort(),
      [digest(1), digest(2), digest(4)].sort(),
    );
    // Many candidates are matched against the text's hex runs, not looked for one by one.
    const many = new Set([...candidates, ...Array.from({ length: 40 }, (_, i) => digest(100 + i))]);
    assert.deepEqual(
      [...await referencedAmong(store, many)].sort(),
      [digest(1), digest(2), digest(4)].sort(),
    );
  });
});
