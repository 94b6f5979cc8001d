/**
 * Unit tests of lib/state/manifest.ts and the manifest store behind it: file
 * names, the manifest format, and updates that are serialised across tasks and
 * processes and survive a crash.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  contentIdOf,
  type FileEntry,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  MAX_NAME_BYTES,
  OPERATOR_OWNER,
  parseFileEntry,
  validateFileName,
} from "../lib/state/manifest.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { readManifest, updateManifest } from "./manifest_util.ts";
import { withTempDir } from "./unit_helpers.ts";

const MANIFEST_URL = new URL("../lib/state/manifest.ts", import.meta.url).href;
const MANIFEST_UTIL_URL = new URL("./manifest_util.ts", import.meta.url).href;
/** The file store's snapshot in a data directory. */
const snapshotPath = (dir: string) => join(dir, "manifest.json");

/** A valid entry with `parts` parts of 4 KiB (fake but well-formed digests). */
function entry(name: string, parts = 0): FileEntry {
  const partSize = 4096;
  const list = Array.from({ length: parts }, (_, i) => ({
    digest: (i % 256).toString(16).padStart(2, "0").repeat(32),
    size: partSize,
    replicas: ["9001", "9002", "9003"],
  }));
  return {
    name,
    size: parts * partSize,
    partSize,
    contentId: contentIdOf(parts * partSize, list),
    owner: OPERATOR_OWNER,
    created: new Date(0).toISOString(),
    parts: list,
  };
}

/**
 * A child process that adds COUNT entries named PREFIX-i (COUNT -1: forever),
 * each with PARTS parts, one updateManifest call per entry.
 */
const WRITER_SCRIPT = `
import { contentIdOf } from ${JSON.stringify(MANIFEST_URL)};
import { updateManifest } from ${JSON.stringify(MANIFEST_UTIL_URL)};
const [dir, prefix, countText, partsText] = Deno.args;
const count = Number(countText);
const parts = Number(partsText);
for (let i = 0; count < 0 || i < count; i++) {
  const name = prefix + "-" + i;
  const list = Array.from({ length: parts }, (_, p) => ({
    digest: (p % 256).toString(16).padStart(2, "0").repeat(32),
    size: 4096,
    replicas: ["9001", "9002", "9003"],
  }));
  await updateManifest(dir, (manifest) => {
    manifest.files[name] = {
      name, size: parts * 4096, partSize: 4096, contentId: contentIdOf(parts * 4096, list),
      owner: "operator", created: "", parts: list,
    };
  });
}
`;

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withTempDir("fts-unit-manifest-", fn);
}

async function writerScript(dir: string): Promise<string> {
  const path = join(dir, "..", `${dir.split("/").pop()}-writer.ts`);
  await Deno.writeTextFile(path, WRITER_SCRIPT);
  return path;
}

function spawnWriter(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", script, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function expectSuccess(child: Deno.ChildProcess): Promise<void> {
  const { code, stderr } = await child.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

// --- names -----------------------------------------------------------------------

Deno.test("validateFileName() rejects empty, too long, slashes, dot names and control characters", () => {
  const bad: unknown[] = [
    "",
    undefined,
    42,
    "a".repeat(MAX_NAME_BYTES + 1),
    "é".repeat(128), // 256 bytes of UTF-8 in 128 characters
    "/",
    "a/b",
    "/etc/passwd",
    "..\\x",
    "\\",
    ".",
    "..",
    "a\u0000b",
    "line\nbreak",
    "tab\there",
    "bell\u0007",
    "del\u007f",
  ];
  for (const name of bad) {
    assert.throws(() => validateFileName(name), TypeError, JSON.stringify(name));
  }
});

Deno.test("validateFileName() accepts unicode and names up to MAX_NAME_BYTES bytes", () => {
  const good = [
    "a.bin",
    "movie 2024 (final).mkv",
    "ünïcødé 文件 🎬.bin",
    "...",
    ".hidden",
    "a..b",
    "a".repeat(MAX_NAME_BYTES),
    "é".repeat(127) + "a", // exactly 255 bytes
  ];
  for (const name of good) assert.equal(validateFileName(name), name);
});

// --- format ----------------------------------------------------------------------

Deno.test("readManifest() of a directory without a manifest is empty at generation 0", async () => {
  await withDir(async (dir) => {
    assert.deepEqual(await readManifest(dir), { generation: 0, files: {} });
  });
});

Deno.test("updateManifest() writes the documented format and readManifest() reads it back", async () => {
  await withDir(async (dir) => {
    await updateManifest(dir, (manifest) => {
      manifest.files["a.bin"] = entry("a.bin", 3);
    });
    const raw = JSON.parse(await Deno.readTextFile(snapshotPath(dir)));
    assert.equal(raw.format, MANIFEST_FORMAT);
    assert.equal(raw.version, MANIFEST_VERSION);
    assert.equal(raw.generation, 1);
    assert.deepEqual(Object.keys(raw.files), ["a.bin"]);
    const manifest = await readManifest(dir);
    assert.deepEqual(manifest.files["a.bin"], entry("a.bin", 3));
  });
});

Deno.test("readManifest() rejects a malformed or unsupported manifest with a SyntaxError", async () => {
  await withDir(async (dir) => {
    const good = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      generation: 1,
      files: { "a.bin": entry("a.bin", 2) },
    };
    const a = good.files["a.bin"];
    const cases: [string, string, RegExp][] = [
      ["truncated JSON", JSON.stringify(good).slice(0, 50), /not valid JSON/],
      ["not an object", "[]", /malformed/],
      ["other format", JSON.stringify({ ...good, format: "other" }), /format/],
      ["newer version", JSON.stringify({ ...good, version: 2 }), /version 2 is not supported/],
      ["no generation", JSON.stringify({ ...good, generation: undefined }), /generation/],
      ["files not an object", JSON.stringify({ ...good, files: null }), /files/],
      [
        "wrong part count",
        JSON.stringify({ ...good, files: { "a.bin": { ...a, size: 3 * 4096 } } }),
        /parts/,
      ],
      [
        "bad digest",
        JSON.stringify({
          ...good,
          files: { "a.bin": { ...a, parts: [{ ...a.parts[0], digest: "xyz" }, a.parts[1]] } },
        }),
        /bad digest/,
      ],
      [
        "wrong part size",
        JSON.stringify({
          ...good,
          files: { "a.bin": { ...a, parts: [{ ...a.parts[0], size: 1 }, a.parts[1]] } },
        }),
        /bad size/,
      ],
      [
        "stale contentId",
        JSON.stringify({ ...good, files: { "a.bin": { ...a, contentId: "0".repeat(64) } } }),
        /contentId/,
      ],
      [
        "entry under another name",
        JSON.stringify({ ...good, files: { "b.bin": a } }),
        /names itself/,
      ],
    ];
    for (const [index, [label, text, message]] of cases.entries()) {
      // A directory per case: the store keeps what it read of a snapshot of
      // unchanged size and header, and fts never rewrites one in place.
      const caseDir = join(dir, String(index));
      await Deno.mkdir(caseDir);
      await Deno.writeTextFile(snapshotPath(caseDir), text);
      await assert.rejects(readManifest(caseDir), (error: unknown) => {
        assert.ok(error instanceof SyntaxError, `${label}: ${error}`);
        assert.match(error.message, message, label);
        return true;
      });
    }
  });
});

Deno.test("parseFileEntry() fills in contentId, owner and created", () => {
  const { contentId: _, owner: __, created: ___, ...bare } = entry("x", 2);
  const parsed = parseFileEntry(bare);
  assert.equal(parsed.contentId, contentIdOf(parsed.size, parsed.parts));
  assert.equal(parsed.owner, OPERATOR_OWNER);
  assert.equal(parsed.created, "");
});

Deno.test("parseFileEntry() keeps each part's xxh128, parts without one stay without, a malformed one is dropped", () => {
  const base = entry("x", 2);
  const fast = "0123456789abcdef".repeat(2);
  const parsed = parseFileEntry({
    ...base,
    parts: [{ ...base.parts[0], xxh128: fast }, base.parts[1]],
  });
  assert.equal(parsed.parts[0]!.xxh128, fast);
  assert.ok(!("xxh128" in parsed.parts[1]!));
  // A malformed one is only a lost hint: dropped, not a broken manifest.
  for (const bad of ["AB".repeat(16), "0".repeat(31), 42, null]) {
    const dropped = parseFileEntry({
      ...base,
      parts: [{ ...base.parts[0], xxh128: bad }, base.parts[1]],
    });
    assert.ok(!("xxh128" in dropped.parts[0]!), String(bad));
  }
  // The content id names the bytes: it is the same with or without fast digests.
  assert.equal(parsed.contentId, base.contentId);
});

Deno.test("parseFileEntry() with storedContentId takes a well-formed stored contentId as it is, and checks any other", () => {
  const good = entry("a.bin", 2);
  const other = "d".repeat(64);
  // Taken as stored (a serving instance): not computed, so not compared.
  assert.equal(
    parseFileEntry({ ...good, contentId: other }, { storedContentId: true }).contentId,
    other,
  );
  assert.throws(() => parseFileEntry({ ...good, contentId: other }), /contentId/);
  // Absent or malformed: computed, and a malformed one still fails the comparison.
  const { contentId: _, ...bare } = good;
  assert.equal(parseFileEntry(bare, { storedContentId: true }).contentId, good.contentId);
  assert.throws(
    () => parseFileEntry({ ...good, contentId: "XYZ" }, { storedContentId: true }),
    /contentId/,
  );
});

Deno.test("FileManifestStore.storedContentIds: a serving instance's store reads stored content ids, another checks them", async () => {
  await withTempDir("fts-unit-manifest-", async (dir) => {
    const a = entry("a.bin", 1);
    await updateManifest(dir, (manifest) => {
      manifest.files["a.bin"] = a;
    });
    // The stored id edited by hand: a reader that checks refuses it.
    const path = snapshotPath(dir);
    const text = await Deno.readTextFile(path);
    assert.ok(text.includes(a.contentId));
    await Deno.writeTextFile(path, text.replace(a.contentId, "e".repeat(64)));
    await assert.rejects(new FileManifestStore(dir).get("a.bin"), /contentId/);
    const serving = new FileManifestStore(dir);
    serving.storedContentIds = true;
    assert.equal((await serving.get("a.bin"))!.entry.contentId, "e".repeat(64));
  });
});

Deno.test('contentIdOf() is SHA-256 of "fts-content-v1:SIZE:" and the part digests (PROTOCOL.md)', () => {
  // Known answers, computed independently (Python hashlib) from the documented formula.
  assert.equal(
    contentIdOf(0, []),
    "9f451db2a7571d25076e13d157968ab434c7fbaaa6ae0e2bf78eaad09a50a210",
  );
  assert.equal(
    contentIdOf(5, [{ digest: "a".repeat(64) }, { digest: "b".repeat(64) }]),
    "e88817f2dd2ca3dcd38c84d661ceba16a939f7c1ae0ea3773c66280893c8f17f",
  );
});

Deno.test("contentIdOf() changes with any part digest and with the size", () => {
  const parts = entry("x", 3).parts;
  const base = contentIdOf(3 * 4096, parts);
  assert.notEqual(contentIdOf(3 * 4096 - 1, parts), base);
  const changed = parts.map((p, i) => (i === 2 ? { ...p, digest: "f".repeat(64) } : p));
  assert.notEqual(contentIdOf(3 * 4096, changed), base);
  assert.match(base, /^[0-9a-f]{64}$/);
});

// --- updates ---------------------------------------------------------------------

Deno.test("updateManifest() leaves the generation alone when nothing changed", async () => {
  await withDir(async (dir) => {
    await updateManifest(dir, (m) => void (m.files["a"] = entry("a")));
    const result = await updateManifest(dir, (m) => Object.keys(m.files).length);
    assert.equal(result, 1);
    assert.equal((await readManifest(dir)).generation, 1);
  });
});

Deno.test("updateManifest() keeps the old manifest when the change throws", async () => {
  await withDir(async (dir) => {
    await updateManifest(dir, (m) => void (m.files["a"] = entry("a")));
    await assert.rejects(
      updateManifest(dir, (m) => {
        m.files["b"] = entry("b");
        throw new RangeError("changed my mind");
      }),
      RangeError,
    );
    const manifest = await readManifest(dir);
    assert.deepEqual(Object.keys(manifest.files), ["a"]);
    assert.equal(manifest.generation, 1);
    // The lock was released: the next update goes through.
    await updateManifest(dir, (m) => void (m.files["c"] = entry("c")));
    assert.equal((await readManifest(dir)).generation, 2);
  });
});

Deno.test("updateManifest() from 40 concurrent calls in one process loses no entry", async () => {
  await withDir(async (dir) => {
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        updateManifest(dir, async (manifest) => {
          // Yield inside the critical section to invite lost updates.
          await new Promise((resolve) => setTimeout(resolve, 0));
          manifest.files[`f${i}`] = entry(`f${i}`, i % 3);
        })),
    );
    const manifest = await readManifest(dir);
    assert.equal(Object.keys(manifest.files).length, 40);
    assert.equal(manifest.generation, 40);
  });
});

Deno.test("updateManifest() from 4 processes at once loses no entry (4 x 15 updates)", async () => {
  await withDir(async (dir) => {
    const script = await writerScript(dir);
    try {
      const writers = ["p0", "p1", "p2", "p3"].map((prefix) =>
        spawnWriter(script, [dir, prefix, "15", "20"])
      );
      // This process writes too, at the same time.
      for (let i = 0; i < 15; i++) {
        await updateManifest(dir, (m) => void (m.files[`local-${i}`] = entry(`local-${i}`, 5)));
      }
      for (const writer of writers) await expectSuccess(writer);
      const manifest = await readManifest(dir);
      const names = Object.keys(manifest.files);
      assert.equal(names.length, 75);
      for (const prefix of ["p0", "p1", "p2", "p3", "local"]) {
        for (let i = 0; i < 15; i++) assert.ok(names.includes(`${prefix}-${i}`));
      }
      assert.equal(manifest.generation, 75);
    } finally {
      await Deno.remove(script);
    }
  });
});

Deno.test("readManifest() never sees a half-written manifest while processes write", async () => {
  await withDir(async (dir) => {
    const script = await writerScript(dir);
    try {
      // Entries of 400 parts make each write ~100 KiB and growing: a torn read would show.
      const writers = ["w0", "w1"].map((prefix) => spawnWriter(script, [dir, prefix, "25", "400"]));
      let done = false;
      const finished = Promise.all(writers.map(expectSuccess)).finally(() => (done = true));
      let reads = 0;
      let last = 0;
      while (!done) {
        const manifest = await readManifest(dir);
        assert.ok(manifest.generation >= last, "the generation went backwards");
        assert.equal(Object.keys(manifest.files).length, manifest.generation);
        last = manifest.generation;
        reads++;
        // A read can end without a turn of the event loop (its file calls are
        // synchronous): one here lets the writers' exits be seen.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await finished;
      assert.ok(reads > 0);
      assert.equal((await readManifest(dir)).generation, 50);
    } finally {
      await Deno.remove(script);
    }
  });
});

Deno.test("updateManifest(): a writer killed with SIGKILL mid-loop leaves a valid manifest", async () => {
  await withDir(async (dir) => {
    const script = await writerScript(dir);
    try {
      const writer = spawnWriter(script, [dir, "crash", "-1", "300"]);
      // Wait until it is well into its loop, then kill it at an arbitrary moment.
      let seen = 0;
      while (seen < 10) {
        seen = (await readManifest(dir)).generation;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 50));
      writer.kill("SIGKILL");
      const status = await writer.status;
      await writer.stderr.cancel();
      assert.equal(status.signal, "SIGKILL");
      const manifest = await readManifest(dir);
      assert.ok(manifest.generation >= seen);
      assert.equal(Object.keys(manifest.files).length, manifest.generation);
      // The dead writer's flock went with it: the next update goes through.
      await updateManifest(dir, (m) => void (m.files["after"] = entry("after")));
      assert.equal((await readManifest(dir)).generation, manifest.generation + 1);
    } finally {
      await Deno.remove(script);
    }
  });
});

Deno.test("FileManifestStore.get() sees every change", async () => {
  await withDir(async (dir) => {
    const store = new FileManifestStore(dir);
    assert.equal(await store.revision(), 0);
    for (let i = 1; i <= 3; i++) {
      await updateManifest(dir, (m) => void (m.files[`f${i}`] = entry(`f${i}`)));
      assert.equal(await store.revision(), i);
      const found = await store.get(`f${i}`);
      assert.ok(found);
      assert.equal(found.revision, i);
    }
  });
});
