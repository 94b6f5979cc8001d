/** Unit tests of lib/state/placement.ts: rendezvous hashing of part digests over instance ids. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  placeAcrossDomains,
  placementWeight,
  placeReplicas,
  rankAcrossDomains,
  rankInstances,
} from "../lib/state/placement.ts";

/** Deterministic, well-spread digests: sha256 of a seed and a counter. */
function digests(count: number, seed = "placement"): string[] {
  return Array.from(
    { length: count },
    (_, i) => createHash("sha256").update(`${seed}:${i}`).digest("hex"),
  );
}

function ports(count: number, base = 9001): string[] {
  return Array.from({ length: count }, (_, i) => String(base + i));
}

Deno.test("placeReplicas() is deterministic and ignores the order of the ids", () => {
  const ids = ports(50);
  const reversed = [...ids].reverse();
  const shuffled = [...ids].sort((a, b) => placementWeight("00", a) - placementWeight("00", b));
  for (const digest of digests(200)) {
    const first = placeReplicas(digest, ids, 5);
    assert.deepEqual(placeReplicas(digest, ids, 5), first);
    assert.deepEqual(placeReplicas(digest, reversed, 5), first);
    assert.deepEqual(placeReplicas(digest, shuffled, 5), first);
  }
});

Deno.test("placeReplicas() returns exactly R distinct ids of the cluster", () => {
  const ids = ports(12);
  for (const replicas of [1, 3, 5, 12]) {
    for (const digest of digests(100, `r${replicas}`)) {
      const chosen = placeReplicas(digest, ids, replicas);
      assert.equal(chosen.length, replicas);
      assert.equal(new Set(chosen).size, replicas);
      for (const id of chosen) assert.ok(ids.includes(id));
    }
  }
});

Deno.test("placeReplicas() takes the R best of rankInstances()", () => {
  const ids = ports(20);
  for (const digest of digests(50)) {
    const ranking = rankInstances(digest, ids);
    assert.equal(ranking.length, ids.length);
    assert.deepEqual(placeReplicas(digest, ids, 4), ranking.slice(0, 4));
  }
});

Deno.test("placeReplicas() rejects more replicas than instances", () => {
  assert.throws(() => placeReplicas(digests(1)[0]!, ports(3), 4), RangeError);
});

Deno.test("placeReplicas() spreads 10k parts evenly over 50 instances (R=5)", () => {
  const ids = ports(50);
  const counts = new Map(ids.map((id) => [id, 0]));
  const primaries = new Map(ids.map((id) => [id, 0]));
  const parts = 10_000;
  for (const digest of digests(parts, "spread")) {
    const chosen = placeReplicas(digest, ids, 5);
    for (const id of chosen) counts.set(id, counts.get(id)! + 1);
    primaries.set(chosen[0]!, primaries.get(chosen[0]!)! + 1);
  }
  // Expected 1000 copies and 200 primaries per instance; the standard deviations
  // are about 30 and 14, so these bounds are loose (~10 sigma).
  for (const id of ids) {
    const copies = counts.get(id)!;
    assert.ok(copies > 700 && copies < 1300, `instance ${id} holds ${copies} copies`);
    const first = primaries.get(id)!;
    assert.ok(first > 80 && first < 320, `instance ${id} is first for ${first} parts`);
  }
});

Deno.test("placeReplicas(): removing one instance moves only the parts it held", () => {
  const ids = ports(50);
  const removed = "9017";
  const remaining = ids.filter((id) => id !== removed);
  let moved = 0;
  for (const digest of digests(3000, "remove")) {
    const before = placeReplicas(digest, ids, 5);
    const after = placeReplicas(digest, remaining, 5);
    if (!before.includes(removed)) {
      assert.deepEqual(after, before, `part ${digest} moved though ${removed} did not hold it`);
      continue;
    }
    moved++;
    // The survivors keep their copies; exactly one new instance takes the lost one.
    const survivors = before.filter((id) => id !== removed);
    assert.deepEqual(after.filter((id) => survivors.includes(id)), survivors);
    assert.equal(after.filter((id) => !before.includes(id)).length, 1);
  }
  assert.ok(moved > 0, "the removed instance held no part at all");
});

Deno.test("placeReplicas(): adding one instance moves only the parts it wins", () => {
  const ids = ports(30);
  const grown = [...ids, "9031"];
  for (const digest of digests(2000, "add")) {
    const before = placeReplicas(digest, ids, 3);
    const after = placeReplicas(digest, grown, 3);
    if (!after.includes("9031")) assert.deepEqual(after, before);
    else assert.deepEqual(after.filter((id) => id !== "9031"), before.slice(0, 2));
  }
});

Deno.test("placementWeight() differs between ids and between digests", () => {
  const [a, b] = digests(2);
  assert.notEqual(placementWeight(a!, "9001"), placementWeight(a!, "9002"));
  assert.notEqual(placementWeight(a!, "9001"), placementWeight(b!, "9001"));
  assert.ok(Number.isSafeInteger(placementWeight(a!, "9001")));
});

Deno.test("rankAcrossDomains() puts min(R, domains) distinct domains first, evenly; one domain: rankInstances()", () => {
  const hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
  const ids = hosts.flatMap((host) => ports(4).map((port) => `${host}:${port}`));
  const domainOf = (id: string) => id.slice(0, id.lastIndexOf(":"));
  const counts = new Map<string, number>();
  for (const digest of digests(3000)) {
    const two = placeAcrossDomains(digest, ids, 2, domainOf);
    assert.equal(new Set(two.map(domainOf)).size, 2);
    const five = placeAcrossDomains(digest, ids, 5, domainOf);
    assert.equal(new Set(five.map(domainOf)).size, 3);
    assert.equal(new Set(five).size, 5);
    for (const id of five) counts.set(id, (counts.get(id) ?? 0) + 1);
    // One domain (a single-host cluster): exactly the plain ranking.
    assert.deepEqual(
      rankAcrossDomains(digest, ports(6), () => "h"),
      rankInstances(digest, ports(6)),
    );
  }
  // 15,000 copies over 12 instances: each within 15% of the 1,250 mean.
  for (const id of ids) {
    const n = counts.get(id) ?? 0;
    assert.ok(Math.abs(n - 1250) < 1250 * 0.15, `${id} holds ${n}`);
  }
  // Zones group hosts: two zones over three hosts give two domains at most.
  const zone = (id: string) => (id.startsWith("10.0.0.3") ? "rack-b" : "rack-a");
  for (const digest of digests(200)) {
    assert.equal(new Set(placeAcrossDomains(digest, ids, 3, zone).map(zone)).size, 2);
  }
});
