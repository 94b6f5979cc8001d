/** Unit tests of lib/client/fetch_state.ts: the verified-parts bitmap and the control file. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Bitmap,
  currentBootId,
  type FetchState,
  loadFetchState,
  saveFetchState,
  STATE_FORMAT,
  STATE_VERSION,
  stateSurvived,
} from "../lib/client/fetch_state.ts";
import { withTempDir } from "./unit_helpers.ts";

Deno.test("Bitmap set(), has(), delete() and count() track part indexes", () => {
  const bitmap = new Bitmap(21);
  assert.equal(bitmap.bytes.length, 3);
  assert.equal(bitmap.count(), 0);
  for (const index of [0, 7, 8, 20]) bitmap.set(index);
  bitmap.set(7);
  for (let i = 0; i < 21; i++) assert.equal(bitmap.has(i), [0, 7, 8, 20].includes(i), `bit ${i}`);
  assert.equal(bitmap.count(), 4);
  bitmap.delete(8);
  bitmap.delete(9);
  assert.equal(bitmap.has(8), false);
  assert.equal(bitmap.count(), 3);
});

Deno.test("Bitmap.toBase64() and fromBase64() round trip", () => {
  for (const size of [0, 1, 8, 9, 1000]) {
    const bitmap = new Bitmap(size);
    for (let i = 0; i < size; i += 3) bitmap.set(i);
    const back = Bitmap.fromBase64(size, bitmap.toBase64());
    assert.equal(back.size, size);
    assert.deepEqual(back.bytes, bitmap.bytes);
    assert.equal(back.count(), bitmap.count());
  }
});

Deno.test("Bitmap.fromBase64() rejects a bitmap of the wrong length", () => {
  const text = new Bitmap(16).toBase64();
  assert.throws(() => Bitmap.fromBase64(17, text), RangeError);
  assert.throws(() => Bitmap.fromBase64(8, text), RangeError);
});

function sampleState(): FetchState {
  const verified = new Bitmap(5);
  verified.set(0);
  verified.set(3);
  return {
    name: "movie é.mkv",
    contentId: "c".repeat(64),
    size: 4 * 1024 + 10,
    partSize: 1024,
    workFile: "movie é.mkv.fts-partial",
    verified,
  };
}

Deno.test("saveFetchState() and loadFetchState() round trip", async () => {
  await withTempDir("fts-unit-state-", async (dir) => {
    const path = join(dir, "x.fts-state");
    const state = sampleState();
    await saveFetchState(path, state);
    const loaded = await loadFetchState(path);
    assert.ok(loaded);
    assert.deepEqual({ ...loaded, verified: undefined }, { ...state, verified: undefined });
    assert.deepEqual(loaded.verified.bytes, state.verified.bytes);
    assert.equal(loaded.verified.size, 5);
    // The file is a documented JSON object, not an opaque blob.
    const raw = JSON.parse(await Deno.readTextFile(path));
    assert.equal(raw.format, STATE_FORMAT);
    assert.equal(raw.version, STATE_VERSION);
    assert.equal(typeof raw.verified, "string");
    // Saving again replaces it whole, leaving no temp file behind.
    state.verified.set(4);
    await saveFetchState(path, state);
    assert.equal((await loadFetchState(path))?.verified.count(), 3);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["x.fts-state"]);
  });
});

Deno.test("loadFetchState() gives undefined for a missing, corrupt or mismatched file", async () => {
  await withTempDir("fts-unit-state-", async (dir) => {
    const path = join(dir, "x.fts-state");
    assert.equal(await loadFetchState(path), undefined);
    await saveFetchState(path, sampleState());
    const good = JSON.parse(await Deno.readTextFile(path));
    const variants: [string, string][] = [
      ["truncated", JSON.stringify(good).slice(0, 40)],
      ["empty", ""],
      ["not an object", "[1,2,3]"],
      ["other format", JSON.stringify({ ...good, format: "something-else" })],
      ["newer version", JSON.stringify({ ...good, version: STATE_VERSION + 1 })],
      ["bitmap for another part count", JSON.stringify({ ...good, size: 100 * 1024 })],
      ["bitmap not base64", JSON.stringify({ ...good, verified: "!!not base64!!" })],
      ["zero part size", JSON.stringify({ ...good, partSize: 0 })],
      ["missing contentId", JSON.stringify({ ...good, contentId: undefined })],
      ["size as text", JSON.stringify({ ...good, size: "4106" })],
    ];
    for (const [label, text] of variants) {
      await Deno.writeTextFile(path, text);
      assert.equal(await loadFetchState(path), undefined, label);
    }
  });
});

Deno.test("a control file saved unflushed holds only within its boot", async () => {
  const state = sampleState();
  assert.equal(stateSurvived(state, "boot-a"), true, "flushed claims hold across boots");
  assert.equal(stateSurvived(state, undefined), true);
  state.bootId = "boot-a";
  assert.equal(stateSurvived(state, "boot-a"), true);
  assert.equal(stateSurvived(state, "boot-b"), false);
  assert.equal(stateSurvived(state, undefined), false);
  await withTempDir("fts-unit-state-", async (dir) => {
    const path = join(dir, "x.fts-state");
    await saveFetchState(path, state);
    assert.equal((await loadFetchState(path))?.bootId, "boot-a");
    // A boot id of the wrong type makes the file unusable, not trusted.
    const raw = JSON.parse(await Deno.readTextFile(path));
    await Deno.writeTextFile(path, JSON.stringify({ ...raw, bootId: 7 }));
    assert.equal(await loadFetchState(path), undefined);
  });
  if (Deno.build.os === "linux") {
    assert.match((await currentBootId()) ?? "", /^[0-9a-f-]{36}$/);
  }
});
