/**
 * Unit tests of the repair and scrub pieces that need no cluster: the
 * part.list and part.verify ops of lib/server/server.ts, and copyPart() of
 * lib/ops/part_copy.ts between two in-process servers over loopback.
 */
import assert from "node:assert/strict";
import { formatRepairEvent } from "../lib/ui/repair_format.ts";
import { Healer, MEMBERSHIP_SETTLE_MS } from "../lib/ops/heal.ts";
import { emptyRepairReport } from "../lib/ops/repair_report.ts";
import { CopyError, copyPart } from "../lib/ops/part_copy.ts";
import { Peer } from "../lib/client/peer.ts";
import { parseRequest } from "../lib/wire/ops.ts";
import { RateLimiter } from "../lib/base/rate_limiter.ts";
import { PartStore } from "../lib/state/store.ts";
import { assertCode, randomBytes, storeBytes } from "./unit_helpers.ts";
import { flipByte, withInstances } from "./unit_instances.ts";
import { startLyingServer } from "./lying_server.ts";
import { RepairRun } from "../lib/ops/repair_run.ts";
import { type RepairTarget } from "../lib/ops/repair_target.ts";
import { verifyCopies } from "../lib/ops/repair_verify.ts";

async function _tempFiles(store: PartStore): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(store.tmpDir))).map((e) => e.name);
}

Deno.test("parseRequest() accepts part.list and part.verify, and rejects a part.verify without a digest", () => {
  assert.deepEqual(parseRequest({ op: "part.list" }), { op: "part.list" });
  const digest = "ab".repeat(32);
  assert.deepEqual(parseRequest({ op: "part.verify", digest }), { op: "part.verify", digest });
  assert.throws(
    () => parseRequest({ op: "part.verify", digest: "../etc" }),
    assertCode("BAD_REQUEST"),
  );
  assert.throws(() => parseRequest({ op: "part.verify" }), assertCode("BAD_REQUEST"));
});

Deno.test("Server part.list names every stored copy with its size, and the quarantined ones", async () => {
  await withInstances(1, async ([a]) => {
    const small = await storeBytes(a!.store, randomBytes(5000));
    const big = await storeBytes(a!.store, randomBytes(70_000));
    const bad = await storeBytes(a!.store, randomBytes(100));
    await a!.store.quarantine(bad);
    const peer = await Peer.connect(a!.address);
    try {
      const listed = await peer.listParts();
      assert.deepEqual(
        [...listed.parts].sort(),
        [[small, 5000], [big, 70_000]].sort() as [string, number][],
      );
      assert.deepEqual([...listed.quarantined], [bad]);
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server part.verify: ok for a good copy; corrupt (and quarantined at once) for a bad one; missing; quarantined", async () => {
  await withInstances(1, async ([a]) => {
    const good = await storeBytes(a!.store, randomBytes(20_000));
    const rotten = await storeBytes(a!.store, randomBytes(20_000));
    await flipByte(a!.store, rotten);
    const peer = await Peer.connect(a!.address);
    try {
      assert.equal(await peer.verifyPart(good), "ok");
      assert.equal(await peer.verifyPart(rotten), "corrupt");
      assert.equal(await peer.verifyPart(rotten), "quarantined");
      assert.equal(await peer.verifyPart("cd".repeat(32)), "missing");
      await assert.rejects(peer.requestPart(rotten, 0, 10), assertCode("QUARANTINED"));
      assert.equal(a!.server.counters.partsVerified, 2);
      assert.equal(a!.server.counters.quarantined, 1);
    } finally {
      peer.close();
    }
  });
});

Deno.test("copyPart() streams a part from one instance into another, which stores it verified", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const digest = await storeBytes(a!.store, bytes);
    const result = await copyPart({
      source: a!.address,
      target: b!.address,
      digest,
      size: bytes.length,
    });
    assert.deepEqual(result, { stored: true });
    assert.deepEqual(await Deno.readFile(b!.store.pathOf(digest)), bytes);
    // Again: the target already has it.
    const again = await copyPart({
      source: a!.address,
      target: b!.address,
      digest,
      size: bytes.length,
    });
    assert.deepEqual(again, { stored: false });
  });
});

Deno.test("copyPart() from a rotten source fails blaming the source, and the target keeps neither part nor temp file", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = randomBytes(300_000);
    const digest = await storeBytes(a!.store, bytes);
    await flipByte(a!.store, digest);
    await assert.rejects(
      copyPart({ source: a!.address, target: b!.address, digest, size: bytes.length }),
      (error) => error instanceof CopyError && error.side === "source" && error.corruptSource,
    );
    assert.equal(await b!.store.sizeOf(digest), undefined);
    assert.deepEqual(await _tempFiles(b!.store), []);
  });
});

Deno.test("copyPart() to a target that is down fails blaming the target; from a source without the part, the source", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = randomBytes(10_000);
    const digest = await storeBytes(a!.store, bytes);
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const nowhere = `127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
    closed.close();
    await assert.rejects(
      copyPart({ source: a!.address, target: nowhere, digest, size: bytes.length }),
      (error) => error instanceof CopyError && error.side === "target",
    );
    await assert.rejects(
      copyPart({ source: b!.address, target: a!.address, digest, size: bytes.length }),
      (error) => error instanceof CopyError && error.side === "source" && !error.corruptSource,
    );
  });
});

Deno.test("copyPart() aborted mid-stream leaves the target no part and, once it notices, no temp file", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = randomBytes(512 * 1024);
    const digest = await storeBytes(a!.store, bytes);
    const controller = new AbortController();
    const copying = copyPart({
      source: a!.address,
      target: b!.address,
      digest,
      size: bytes.length,
      limiter: new RateLimiter(256 * 1024),
      signal: controller.signal,
    });
    // Wait until the target has begun its temp file, then pull the plug.
    for (let i = 0; i < 500 && (await _tempFiles(b!.store)).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal((await _tempFiles(b!.store)).length, 1, "the target never started a temp file");
    controller.abort(new DOMException("stop", "AbortError"));
    await assert.rejects(copying);
    assert.equal(await b!.store.sizeOf(digest), undefined);
    for (let i = 0; i < 200 && (await _tempFiles(b!.store)).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(await _tempFiles(b!.store), []);
  });
});

Deno.test("verifyCopies(): a copy its instance answers an error for is unchecked; the instance's other copies are still checked", async () => {
  const [failing, good, rotten] = ["aa", "bb", "cc"].map((x) => x.repeat(32)) as [
    string,
    string,
    string,
  ];
  const liar = startLyingServer((request) => {
    if (request.op !== "part.verify") return undefined;
    if (request.digest === failing) {
      return { header: { op: "error", code: "INTERNAL", message: "Is a directory (os error 21)" } };
    }
    const status = request.digest === good ? "ok" : "corrupt";
    return { header: { op: "verified", digest: request.digest, status } };
  });
  try {
    const target = {
      view: { replicas: 2, ids: ["9"], address: () => liar.address, domain: () => "x" },
    } as unknown as RepairTarget;
    const run = new RepairRun(target, {});
    const sizes = new Map([[failing, 10], [good, 10], [rotten, 10]]);
    run.stored.set("9", { parts: sizes, quarantined: new Set() });
    const refs = [{ file: "f.bin", index: 0 }];
    const wanted = new Map(
      [failing, good, rotten].map((digest) => [
        digest,
        { digest, size: 10, refs, listed: new Set(["9"]) },
      ]),
    );
    const checked = await verifyCopies(
      run,
      new Map([["9", new Set([failing, good, rotten])]]),
      wanted,
    );
    assert.deepEqual([...checked.get("9")!], [good]);
    assert.deepEqual(run.report.unchecked.map((u) => [u.id, u.digest, u.reason]), [
      ["9", failing, "Is a directory (os error 21)"],
    ]);
    assert.deepEqual(run.report.corrupt.map((c) => c.digest), [rotten]);
    assert.equal(run.report.verified, 2);
  } finally {
    await liar.stop();
  }
});

Deno.test("formatRepairEvent(): an under-replicated part says why: no room, or no readable copy", () => {
  const event = {
    type: "short" as const,
    digest: "a".repeat(64),
    refs: [{ file: "f.bin", index: 3 }],
    have: 1,
    want: 3,
  };
  assert.equal(
    formatRepairEvent(event),
    'under-replicated: part 3 of "f.bin" has 1 of 3 copies; no other live instance can take one',
  );
  assert.equal(
    formatRepairEvent({ ...event, noSource: true }),
    'under-replicated: part 3 of "f.bin" has 1 of 3 copies; no copy could be read for another ' +
      "(see the failed copies above)",
  );
});

Deno.test("Healer: who is gone is decided when the run starts its work, after any wait for the lock", async () => {
  const seen: { before: string[]; now: string[] }[] = [];
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  const healer = new Healer(async (options) => {
    // As a run waiting for another host's repair lock: the instance comes back meanwhile.
    const before = [...(options.goneIds ?? [])];
    await held;
    seen.push({ before, now: [...(options.goneIdsNow?.() ?? [])] });
    return emptyRepairReport(false);
  }, { healAfterMs: 20 });
  try {
    healer.instanceDown("9001");
    while (healer.status().running === null) await new Promise((r) => setTimeout(r, 5));
    healer.instanceUp("9001");
    release();
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seen[0], { before: ["9001"], now: [] });
  } finally {
    await healer.stop();
  }
});

Deno.test("Healer: instances going down together (a host's, seen over 1.4 s) share one run", async () => {
  const runs: string[][] = [];
  const healer = new Healer(async (options) => {
    runs.push([...(options.goneIds ?? [])].sort());
    return await Promise.resolve(emptyRepairReport(false));
  }, { healAfterMs: 20 });
  try {
    // Seen down over 1.4 s, as a host's instances in etcd may be (each lease lapses on its own).
    healer.instanceDown("9001");
    await new Promise((resolve) => setTimeout(resolve, 700));
    healer.instanceDown("9002");
    await new Promise((resolve) => setTimeout(resolve, 700));
    healer.instanceDown("9003");
    const deadline = Date.now() + 5_000;
    while (runs.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await new Promise((resolve) => setTimeout(resolve, MEMBERSHIP_SETTLE_MS + 200));
    assert.deepEqual(runs, [["9001", "9002", "9003"]]);
  } finally {
    await healer.stop();
  }
});
