/**
 * The file manifest store under races with other processes: a reader that
 * opens the files while a writer compacts, a walk of the whole manifest while
 * an entry is renamed, a compaction that fails after its change committed,
 * and a snapshot that lost its last newline in a hand edit.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { allEntries, ManifestChangedError, walkWhole } from "../lib/state/manifest_store.ts";
import { putEntries, testEntry } from "./manifest_util.ts";
import { withTempDir } from "./unit_helpers.ts";

/** Runs `fn` with Deno.open replaced by `open`; the real one comes back after. */
async function _withOpen(
  open: (
    real: typeof Deno.open,
    path: string | URL,
    options?: Deno.OpenOptions,
  ) => Promise<Deno.FsFile>,
  fn: () => Promise<void>,
): Promise<void> {
  const real = Deno.open;
  Object.assign(Deno, {
    open: (path: string | URL, options?: Deno.OpenOptions) => open(real, path, options),
  });
  try {
    await fn();
  } finally {
    Object.assign(Deno, { open: real });
  }
}

/**
 * Another process that puts entries into the manifest in `dir` until it
 * compacts (manifest.json is replaced), run to its end before returning.
 */
function _compactInAnotherProcess(dir: string): void {
  const script = join(dir, "..", `compact-${crypto.randomUUID()}.ts`);
  Deno.writeTextFileSync(
    script,
    `import { FileManifestStore } from ${
      JSON.stringify(import.meta.resolve("../lib/state/file_manifest_store.ts"))
    };
import { putEntries, testEntry } from ${JSON.stringify(import.meta.resolve("./manifest_util.ts"))};
const dir = Deno.args[0];
const writer = new FileManifestStore(dir);
const before = Deno.statSync(dir + "/manifest.json").ino;
for (let i = 0; Deno.statSync(dir + "/manifest.json").ino === before; i++) {
  await putEntries(writer, testEntry("c-" + i + ".bin", i));
}
`,
  );
  try {
    const run = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--quiet", "--no-config", script, dir],
      stdin: "null",
    }).outputSync();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
  } finally {
    Deno.removeSync(script);
  }
}

Deno.test("FileManifestStore: a reader whose open races a compaction loses no change", async () => {
  await withTempDir("fts-unit-store-race-", async (dir) => {
    const writer = new FileManifestStore(dir);
    const reader = new FileManifestStore(dir);
    await putEntries(
      writer,
      ...Array.from({ length: 20 }, (_, i) => testEntry(`base-${i}.bin`, i)),
    );
    await putEntries(writer, testEntry("b.bin", 7));
    // The reader opens the journal, then the snapshot, synchronously: another
    // process compacts between the two opens.
    let compactions = 0;
    let opens = 0;
    const real = Deno.openSync;
    Object.assign(Deno, {
      openSync: (path: string | URL, options?: Deno.OpenOptions) => {
        if (!options?.write && String(path).startsWith(dir) && ++opens === 2) {
          compactions++;
          _compactInAnotherProcess(dir);
        }
        return real(path, options);
      },
    });
    try {
      assert.ok(await reader.get("b.bin"), "b.bin lost by a reader that raced a compaction");
    } finally {
      Object.assign(Deno, { openSync: real });
    }
    assert.equal(compactions, 1);
    assert.equal(await reader.revision(), await writer.revision());
  });
});

Deno.test("allEntries() refuses a walk across revisions; walkWhole() then sees a renamed entry", async () => {
  await withTempDir("fts-unit-store-walk-", async (dir) => {
    const store = new FileManifestStore(dir);
    const other = new FileManifestStore(dir);
    await putEntries(
      store,
      ...Array.from({ length: 250 }, (_, i) => testEntry(`f-${String(i).padStart(3, "0")}`, i)),
    );
    const rename = () =>
      other.change(["f-240", "a-renamed"], (current) => ({
        deletes: ["f-240"],
        puts: [{ ...current.get("f-240")!.entry, name: "a-renamed" }],
        result: 0,
      }));
    await assert.rejects(async () => {
      let seen = 0;
      for await (const _ of allEntries(store, 100)) if (++seen === 100) await rename();
    }, ManifestChangedError);
    let walks = 0;
    const names = await walkWhole(async () => {
      walks++;
      const names = new Set<string>();
      for await (const { entry } of allEntries(store, 100)) {
        names.add(entry.name);
        if (walks === 1 && names.size === 100) {
          await other.change(["f-241", "a-renamed-too"], (current) => ({
            deletes: ["f-241"],
            puts: [{ ...current.get("f-241")!.entry, name: "a-renamed-too" }],
            result: 0,
          }));
        }
      }
      return names;
    });
    assert.equal(walks, 2);
    assert.equal(names.size, 250);
    assert.ok(names.has("a-renamed") && names.has("a-renamed-too"));
  });
});

Deno.test("FileManifestStore.change(): a compaction that fails leaves the committed change standing", async () => {
  await withTempDir("fts-unit-store-compact-", async (dir) => {
    const store = new FileManifestStore(dir);
    await putEntries(store, ...Array.from({ length: 5 }, (_, i) => testEntry(`base-${i}.bin`, i)));
    let refused = 0;
    await _withOpen((real, path, options) => {
      if (options?.createNew && String(path).startsWith(dir)) {
        refused++;
        return Promise.reject(new Deno.errors.PermissionDenied("no room for a new snapshot"));
      }
      return real(path, options);
    }, async () => {
      for (let i = 0; i < 10; i++) await putEntries(store, testEntry(`new-${i}.bin`, i));
    });
    assert.ok(refused > 0, "no compaction was tried");
    const fresh = new FileManifestStore(dir);
    for (let i = 0; i < 10; i++) assert.ok(await fresh.get(`new-${i}.bin`));
    // Compaction works again once the disk has room.
    await putEntries(store, testEntry("after.bin", 1));
    assert.ok(await new FileManifestStore(dir).get("after.bin"));
  });
});

Deno.test("FileManifestStore: a snapshot that lost its last newline in a hand edit is still read", async () => {
  await withTempDir("fts-unit-store-newline-", async (dir) => {
    const store = new FileManifestStore(dir);
    await putEntries(store, testEntry("a.bin", 1), testEntry("b.bin", 2));
    // Fold the journal into the snapshot, as a compaction would, then edit it.
    const path = join(dir, "manifest.json");
    const text = (await Deno.readTextFile(path)).replace(/\n$/, "");
    JSON.parse(text);
    await Deno.writeTextFile(path, text);
    await Deno.remove(join(dir, "manifest.journal")).catch(() => {});
    const found = await new FileManifestStore(dir).get("a.bin");
    assert.equal(found?.entry.name, "a.bin");
  });
});
