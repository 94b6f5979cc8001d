/** Unit tests of lib/state/store.ts: the content-addressed part store of one instance. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  PartStore,
  STORE_STALL_MS,
  StoreStalledError,
  TEMP_LOCK_GRACE_MS,
} from "../lib/state/store.ts";
import {
  assertCode,
  concat,
  randomBytes,
  sha256,
  storeBytes,
  withTempDir,
} from "./unit_helpers.ts";

async function withStore(fn: (store: PartStore) => Promise<void>): Promise<void> {
  await withTempDir("fts-unit-store-", async (root) => {
    const store = new PartStore(join(root, "instance"));
    await store.init();
    await fn(store);
  });
}

/** Every file under a directory, as paths relative to it. */
function filesUnder(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isDirectory) {
      out.push(...filesUnder(join(dir, entry.name), `${prefix}${entry.name}/`));
    } else out.push(prefix + entry.name);
  }
  return out.sort();
}

async function readAll(file: Deno.FsFile): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  let n: number | null;
  while ((n = await file.read(buffer)) !== null) chunks.push(buffer.slice(0, n));
  return concat(...chunks);
}

Deno.test("PartStore.beginWrite(): a part is visible only after commit()", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(300_000);
    const digest = sha256(bytes);
    const writer = await store.beginWrite(digest);
    await writer.write(bytes.subarray(0, 1000));
    await writer.write(bytes.subarray(1000));
    assert.equal(await store.sizeOf(digest), undefined);
    await assert.rejects(store.open(digest), assertCode("NOT_FOUND"));
    assert.deepEqual(await store.list(), []);
    assert.equal(filesUnder(store.tmpDir).length, 1);
    await writer.commit();
    assert.equal(await store.sizeOf(digest), bytes.length);
    assert.deepEqual(await store.list(), [digest]);
    assert.equal(store.pathOf(digest), join(store.partsDir, digest.slice(0, 2), digest));
    const file = await store.open(digest);
    try {
      assert.deepEqual(await readAll(file), bytes);
    } finally {
      file.close();
    }
    assert.deepEqual(filesUnder(store.tmpDir), []);
    assert.equal(await store.verify(digest), true);
  });
});

Deno.test("PartWriter.commit() with wrong bytes throws DIGEST_MISMATCH and leaves nothing", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(5000);
    const digest = sha256(bytes);
    const writer = await store.beginWrite(digest);
    const wrong = bytes.slice();
    wrong[4321]! ^= 1;
    await writer.write(wrong);
    await assert.rejects(writer.commit(), assertCode("DIGEST_MISMATCH"));
    assert.deepEqual(filesUnder(store.partsDir), []);
    assert.deepEqual(filesUnder(store.tmpDir), []);
    assert.equal(await store.sizeOf(digest), undefined);
    await assert.rejects(writer.commit(), Error, "a finished writer cannot commit again");
  });
});

Deno.test("PartWriter.abort() removes the temp file and publishes nothing", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(100);
    const writer = await store.beginWrite(sha256(bytes));
    await writer.write(bytes);
    await writer.abort();
    await writer.abort();
    assert.deepEqual(filesUnder(store.tmpDir), []);
    assert.deepEqual(filesUnder(store.partsDir), []);
  });
});

Deno.test("PartWriter with hash: false trusts the caller's digest", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(100);
    const digest = sha256(bytes);
    const writer = await store.beginWrite(digest, { hash: false });
    await writer.write(bytes);
    await writer.commit();
    assert.equal(await store.verify(digest), true);
  });
});

Deno.test("PartStore.quarantine() makes open() throw QUARANTINED", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(2048);
    const digest = await storeBytes(store, bytes);
    assert.equal(await store.quarantine(digest), true);
    await assert.rejects(store.open(digest), assertCode("QUARANTINED"));
    assert.equal(await store.sizeOf(digest), undefined);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(filesUnder(store.quarantineDir), [digest]);
    assert.equal(await store.quarantine(digest), false);
    await assert.rejects(store.verify(digest), assertCode("QUARANTINED"));
  });
});

Deno.test("PartStore.verify() detects a stored copy damaged on disk", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(4096);
    const digest = await storeBytes(store, bytes);
    const damaged = bytes.slice();
    damaged[0]! ^= 0xff;
    await Deno.writeFile(store.pathOf(digest), damaged);
    assert.equal(await store.verify(digest), false);
  });
});

Deno.test("PartStore.open() of an unknown digest throws NOT_FOUND", async () => {
  await withStore(async (store) => {
    await assert.rejects(store.open("0".repeat(64)), assertCode("NOT_FOUND"));
    assert.equal(await store.remove("0".repeat(64)), false);
  });
});

Deno.test("PartStore.pathOf() rejects anything that is not a digest", async () => {
  await withStore(async (store) => {
    const bad = [
      "../x",
      "../../etc/passwd",
      "",
      "ab/" + "c".repeat(61),
      "A".repeat(64),
      "0".repeat(63),
      "0".repeat(65),
      "0".repeat(63) + "\n",
      "..",
      "0".repeat(62) + "/.",
    ];
    for (const digest of bad) {
      assert.throws(() => store.pathOf(digest), TypeError, JSON.stringify(digest));
      assert.throws(() => store.quarantinePathOf(digest), TypeError, JSON.stringify(digest));
      await assert.rejects(store.beginWrite(digest), TypeError);
    }
    assert.deepEqual(filesUnder(store.tmpDir), []);
  });
});

Deno.test("PartStore.cleanStaleTemps() removes temp files of dead processes only", async () => {
  await withStore(async (store) => {
    const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
    await child.status;
    const deadPid = child.pid;
    const livePid = 1; // init never dies
    for (const name of [`${deadPid}.1.tmp`, `${livePid}.2.tmp`, "junk.tmp"]) {
      await Deno.writeTextFile(join(store.tmpDir, name), "partial");
    }
    const removed = await store.cleanStaleTemps();
    assert.equal(removed, 2);
    assert.deepEqual(filesUnder(store.tmpDir), [`${livePid}.2.tmp`]);
  });
});

Deno.test("PartStore.cleanStaleTemps() goes by its writer's lock: a live writer's temp stays, an unheld one of a reused pid goes once a minute old", async () => {
  await withStore(async (store) => {
    const writer = await store.beginWrite("ab".repeat(32));
    await writer.write(new Uint8Array(10));
    const livePid = 1; // init never dies: as a dead writer's pid taken by another process
    for (const name of [`${livePid}.old.tmp`, `${livePid}.new.tmp`]) {
      await Deno.writeTextFile(join(store.tmpDir, name), "partial");
    }
    const old = new Date(Date.now() - TEMP_LOCK_GRACE_MS - 1_000);
    for (const name of [...filesUnder(store.tmpDir)].filter((n) => !n.includes(".new."))) {
      await Deno.utime(join(store.tmpDir, name), old, old);
    }
    assert.equal(await store.cleanStaleTemps(), 1);
    const writing = filesUnder(store.tmpDir).filter((n) => n.startsWith(`${Deno.pid}.`));
    assert.equal(writing.length, 1, "the live writer's temp file was removed");
    assert.deepEqual(filesUnder(store.tmpDir).sort(), [`${livePid}.new.tmp`, ...writing].sort());
    await writer.abort();
  });
});

Deno.test("PartStore.remove() deletes a stored copy", async () => {
  await withStore(async (store) => {
    const bytes = randomBytes(10);
    const digest = await storeBytes(store, bytes);
    assert.equal(await store.remove(digest), true);
    await assert.rejects(store.open(digest), assertCode("NOT_FOUND"));
  });
});

Deno.test("PartStore.io(): an operation under way for STORE_STALL_MS stalls the store; one that ended does not", async () => {
  await withStore(async (store) => {
    let finish = (_ok: boolean) => {};
    const hung = store.io(() =>
      new Promise<void>((resolve, reject) =>
        finish = (ok) => ok ? resolve() : reject(new Error("EIO"))
      )
    );
    const now = performance.now();
    assert.equal(store.stalled(now + STORE_STALL_MS - 100), undefined);
    assert.match(store.stalled(now + STORE_STALL_MS + 100) ?? "", /its disk has not answered/);
    // Under way a moment only: not stalled yet.
    assert.equal(store.problem(), undefined);
    // It fails (an I/O error, say): no longer under way, and quick, so nothing is held.
    finish(false);
    await assert.rejects(hung, /EIO/);
    assert.equal(store.stalled(performance.now() + STORE_STALL_MS + 100), undefined);
    store.assertNotStalled();
  });
});

Deno.test("PartStore with deadlineMs: an operation that does not return fails with StoreStalledError", async () => {
  await withTempDir("fts-unit-store-", async (root) => {
    const store = new PartStore(join(root, "instance"), { deadlineMs: 50 });
    await assert.rejects(
      store.io(() => new Promise(() => {})),
      (error: Error) =>
        error instanceof StoreStalledError && /has not answered/.test(error.message),
    );
    // The ordinary operations go through it.
    await store.init();
    assert.equal(await store.sizeOf("a".repeat(64)), undefined);
  });
});
