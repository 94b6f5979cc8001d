/**
 * Unit tests of the writers policy (who may store parts, quotas), its file
 * in a data directory, the per-instance ledger of parts no file uses yet,
 * the cached read instances use, and the signed part.has.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertMayStore,
  assertWithinQuota,
  changePolicy,
  encodePolicy,
  openPolicy,
  parsePolicy,
  quotaOf,
  type WritersPolicy,
} from "../lib/auth/writers_policy.ts";
import { changeWritersFile, readWritersFile, writersPath } from "../lib/auth/writers_file.ts";
import { PendingParts, type Reservation } from "../lib/state/pending_parts.ts";
import { PartStore } from "../lib/state/store.ts";
import { cachedRead } from "../lib/base/cached_read.ts";
import { ephemeralIdentity } from "../lib/auth/identity.ts";
import { checkPartHas, signPartHas } from "../lib/auth/part_put_signature.ts";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { ProtocolError } from "../lib/wire/errors.ts";
import { withTempDir } from "./unit_helpers.ts";

const KiB = 1024;

function _code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof ProtocolError ? error.code : String(error);
  }
}

Deno.test("writers policy: open admits any key; closed only listed, operator and host keys", async () => {
  const [a, b, operator, host] = await Promise.all(
    Array.from({ length: 4 }, async () => (await ephemeralIdentity()).owner),
  ) as [string, string, string, string];
  let policy = openPolicy();
  assert.equal(_code(() => assertMayStore(policy, a, operator)), undefined);
  policy = changePolicy(policy, { type: "add", key: a });
  policy = changePolicy(policy, { type: "closed" });
  policy = changePolicy(policy, { type: "host", key: host });
  assert.equal(_code(() => assertMayStore(policy, a, operator)), undefined);
  assert.equal(_code(() => assertMayStore(policy, operator, operator)), undefined);
  assert.equal(_code(() => assertMayStore(policy, host, operator)), undefined);
  assert.equal(_code(() => assertMayStore(policy, b, operator)), "NOT_ALLOWED");
  try {
    assertMayStore(policy, b, operator);
  } catch (error) {
    assert.equal(
      (error as Error).message,
      `key ${b} is not allowed to store parts on this cluster; ` +
        `ask the operator to run \`fts writers add ${b}\``,
    );
  }
  policy = changePolicy(policy, { type: "remove", key: a });
  assert.equal(_code(() => assertMayStore(policy, a, operator)), "NOT_ALLOWED");
  assert.throws(
    () => changePolicy(policy, { type: "remove", key: a }),
    /is not on the writers list/,
  );
  assert.throws(() => changePolicy(policy, { type: "add", key: "ed25519:short" }), TypeError);
  // Closed: a quota for an unlisted key is a mistake worth saying.
  assert.throws(
    () => changePolicy(policy, { type: "quota", key: b, quotaBytes: 1 }),
    /not on the writers list/,
  );
});

Deno.test("writers policy: a key's quota, else the default; none for operator and hosts", async () => {
  const [a, b, operator] = await Promise.all(
    Array.from({ length: 3 }, async () => (await ephemeralIdentity()).owner),
  ) as [string, string, string];
  let policy: WritersPolicy = changePolicy(openPolicy(), {
    type: "add",
    key: a,
    quotaBytes: 10 * KiB,
  });
  assert.equal(quotaOf(policy, a, operator), 10 * KiB);
  assert.equal(quotaOf(policy, b, operator), undefined);
  policy = changePolicy(policy, { type: "quota", key: undefined, quotaBytes: 5 * KiB });
  assert.equal(quotaOf(policy, b, operator), 5 * KiB);
  assert.equal(quotaOf(policy, operator, operator), undefined);
  // Adding again keeps the quota; quota none drops the key's own.
  policy = changePolicy(policy, { type: "add", key: a });
  assert.equal(quotaOf(policy, a, operator), 10 * KiB);
  policy = changePolicy(policy, { type: "quota", key: a, quotaBytes: undefined });
  assert.equal(quotaOf(policy, a, operator), 5 * KiB);
  assert.equal(_code(() => assertWithinQuota("x", a, 5 * KiB, 4 * KiB, KiB)), undefined);
  assert.equal(_code(() => assertWithinQuota("x", a, 5 * KiB, 4 * KiB, KiB + 1)), "NOT_ALLOWED");
  assert.equal(_code(() => assertWithinQuota("x", a, undefined, 1e15, 1e15)), undefined);
  // Round trip through the kept form; junk in it is refused or ignored, not trusted.
  assert.deepEqual(parsePolicy(encodePolicy(policy), "t"), policy);
  assert.throws(() => parsePolicy("{}", "t"), /not an fts writers policy/);
  assert.throws(() => parsePolicy("nope", "t"), /not valid JSON/);
  const odd = parsePolicy(
    JSON.stringify({
      format: "fts-writers",
      version: 1,
      open: false,
      keys: { [a]: { quotaBytes: -1 } },
      defaultQuotaBytes: "big",
    }),
    "t",
  );
  assert.deepEqual(odd, { open: false, keys: { [a]: {} } });
  // A host's key goes with rm as a listed key does; one on neither list is an error.
  const hosted = changePolicy(policy, { type: "host", key: b });
  assert.equal(quotaOf(hosted, b, operator), undefined);
  const unhosted = changePolicy(hosted, { type: "remove", key: b });
  assert.deepEqual(unhosted.hostKeys, []);
  assert.equal(quotaOf(unhosted, b, operator), 5 * KiB);
  assert.throws(
    () => changePolicy(unhosted, { type: "remove", key: b }),
    /not on the writers list/,
  );
});

Deno.test("writers file: none means open; 20 concurrent adds all land; the file is whole JSON", async () => {
  await withTempDir("fts-unit-writers-", async (dir) => {
    assert.deepEqual(await readWritersFile(dir), openPolicy());
    const keys = await Promise.all(
      Array.from({ length: 20 }, async () => (await ephemeralIdentity()).owner),
    );
    await Promise.all(keys.map((key) => changeWritersFile(dir, { type: "add", key })));
    const policy = await readWritersFile(dir);
    assert.deepEqual(Object.keys(policy.keys).sort(), [...keys].sort());
    JSON.parse(await Deno.readTextFile(writersPath(dir)));
  });
});

Deno.test("cachedRead: one read per ttl, shared by concurrent callers; a failed read is not kept", async () => {
  let reads = 0;
  let fail = false;
  const read = cachedRead(() => {
    reads++;
    return fail ? Promise.reject(new Error("down")) : Promise.resolve(reads);
  }, 50);
  assert.deepEqual(await Promise.all([read(), read(), read()]), [1, 1, 1]);
  await new Promise((r) => setTimeout(r, 60));
  fail = true;
  await assert.rejects(read(), /down/);
  fail = false;
  assert.equal(await read(), 3);
});

Deno.test("cachedRead with staleOnError: a failed refresh answers with the last value read; with none, the error", async () => {
  let fail = true;
  let reads = 0;
  const read = cachedRead(
    () => {
      reads++;
      return fail ? Promise.reject(new Error("etcd is unavailable")) : Promise.resolve(reads);
    },
    10,
    { staleOnError: true },
  );
  await assert.rejects(read(), /etcd is unavailable/);
  fail = false;
  assert.equal(await read(), 2);
  await new Promise((r) => setTimeout(r, 20));
  fail = true;
  assert.equal(await read(), 2);
  assert.equal(reads, 3);
});

/** The reservation reserve() made; fails the test when it refused the part instead. */
function _admitted(reserved: number | Reservation): Reservation {
  assert.ok(typeof reserved !== "number", `refused: the key holds ${reserved} bytes`);
  return reserved;
}

Deno.test("PendingParts: a key's parts count until a file uses them or they are gone; the ledger survives a restart", async () => {
  await withTempDir("fts-unit-pending-", async (dir) => {
    const store = new PartStore(join(dir, "instances", "1"));
    await store.init();
    const referenced = new Set<string>();
    const put = async (seed: number): Promise<string> => {
      const bytes = new Uint8Array(KiB).fill(seed);
      const digest = await sha256Hex(bytes);
      const writer = await store.beginWrite(digest);
      await writer.write(bytes);
      await writer.commit();
      return digest;
    };
    const ledger = new PendingParts(store, () => Promise.resolve(new Set(referenced)));
    const digests: string[] = [];
    for (let seed = 1; seed <= 3; seed++) {
      const digest = await put(seed);
      await _admitted(await ledger.reserve("k", digest, KiB, 3 * KiB)).stored();
      digests.push(digest);
    }
    // Full: the fourth does not fit, and nothing is claimed for it.
    assert.equal(await ledger.reserve("k", "d".repeat(64), KiB, 3 * KiB), 3 * KiB);
    assert.equal(await ledger.heldBy("k"), 3 * KiB);
    // Another key has its own room.
    _admitted(await ledger.reserve("other", "e".repeat(64), KiB, KiB)).released();
    assert.equal(await ledger.heldBy("other"), 0);
    // A put of a stored digest with another size (its body then fails the digest) leaves
    // the record as it was: else one bad put per part erased what the key stored.
    _admitted(await ledger.reserve("k", digests[2]!, 4, undefined)).released();
    assert.equal(await ledger.reserve("k", "d".repeat(64), KiB, 3 * KiB), 3 * KiB);
    _admitted(await ledger.reserve("other", digests[2]!, 4, undefined)).released();
    assert.equal(await ledger.heldBy("k"), 3 * KiB);
    // A restarted instance reads the same from the ledger file.
    const again = new PendingParts(store, () => Promise.resolve(new Set(referenced)));
    assert.equal(await again.heldBy("k"), 3 * KiB);
    // One part published, one freed: room for two more.
    referenced.add(digests[0]!);
    await store.remove(digests[1]!);
    _admitted(await again.reserve("k", "f".repeat(64), KiB, 3 * KiB));
    assert.equal(await again.heldBy("k"), 2 * KiB);
    const lines = (await Deno.readTextFile(again.path)).trim().split("\n");
    assert.deepEqual(lines.map((line) => JSON.parse(line)[0]), [digests[2]]);
  });
});

Deno.test("PendingParts: 4 parts of one upload arriving together share one prune of published parts, and all fit", async () => {
  await withTempDir("fts-unit-pending-", async (dir) => {
    const store = new PartStore(join(dir, "instances", "1"));
    await store.init();
    const published = new Set<string>();
    let walks = 0;
    const ledger = new PendingParts(store, async () => {
      walks++;
      await new Promise((r) => setTimeout(r, 20));
      return new Set(published);
    });
    // Three parts of a file published since: still in the ledger until a prune.
    for (let seed = 1; seed <= 3; seed++) {
      const bytes = new Uint8Array(KiB).fill(seed);
      const digest = await sha256Hex(bytes);
      const writer = await store.beginWrite(digest);
      await writer.write(bytes);
      await writer.commit();
      await _admitted(await ledger.reserve("k", digest, KiB, undefined)).stored();
      published.add(digest);
    }
    // The last two arrive while the first prune is under way.
    const reserve = (c: string) => ledger.reserve("k", c.repeat(64), KiB, 4 * KiB);
    const first = [reserve("a"), reserve("b")];
    await new Promise((r) => setTimeout(r, 5));
    const held = await Promise.all([...first, reserve("c"), reserve("d")]);
    assert.deepEqual(held.map((r) => typeof r), ["object", "object", "object", "object"]);
    assert.equal(walks, 1);
  });
});

Deno.test("PendingParts: a prune's answer is not reused once a part was admitted after it (its file may be published since)", async () => {
  await withTempDir("fts-unit-pending-", async (dir) => {
    const store = new PartStore(join(dir, "instances", "1"));
    await store.init();
    const published = new Set<string>();
    const ledger = new PendingParts(store, () => Promise.resolve(new Set(published)));
    const put = async (seed: number, quota: number): Promise<number | undefined> => {
      const bytes = new Uint8Array(KiB).fill(seed);
      const digest = await sha256Hex(bytes);
      const writer = await store.beginWrite(digest);
      await writer.write(bytes);
      await writer.commit();
      const reserved = await ledger.reserve("k", digest, KiB, quota);
      if (typeof reserved !== "number") return void await reserved.stored();
      await store.remove(digest);
      return reserved;
    };
    assert.equal(await put(1, 2 * KiB), undefined);
    assert.equal(await put(2, 2 * KiB), undefined);
    // Over 2 KiB: a prune finds nothing published, and the third is refused.
    assert.equal(await put(3, 2 * KiB), 2 * KiB);
    // The quota raised, the third is admitted; then all three are published.
    assert.equal(await put(3, 3 * KiB), undefined);
    for (let seed = 1; seed <= 3; seed++) {
      published.add(await sha256Hex(new Uint8Array(KiB).fill(seed)));
    }
    // Within REFERENCED_CACHE_MS of that prune, the next part still fits: none count now.
    assert.equal(await put(4, 3 * KiB), undefined);
    assert.equal(await ledger.heldBy("k"), KiB);
  });
});

Deno.test("signed part.has: checks cluster, freshness and signature", async () => {
  const identity = await ephemeralIdentity();
  const digest = "a".repeat(64);
  const auth = await signPartHas(identity, { cluster: "c1-cluster", digest });
  assert.equal(
    await checkPartHas({ cluster: "c1-cluster", digest }, auth, "c1-cluster"),
    identity.owner,
  );
  await assert.rejects(
    checkPartHas({ cluster: "c1-cluster", digest: "b".repeat(64) }, auth, "c1-cluster"),
    (e) => e instanceof ProtocolError && e.code === "UNAUTHORIZED",
  );
  await assert.rejects(
    checkPartHas({ cluster: "c2-cluster", digest }, auth, "c1-cluster"),
    /signed for cluster/,
  );
  await assert.rejects(
    checkPartHas({ cluster: "c1-cluster", digest }, auth, "c1-cluster", Date.now() + 3_600_000),
    (e) => e instanceof ProtocolError && e.code === "UNAUTHORIZED",
  );
});
