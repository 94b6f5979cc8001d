/**
 * The chaos soak (tests/soak.ts) as part of the suite: a short run, plus
 * checks of the nemesis's schedule. The long run is `deno task soak`.
 */
import assert from "node:assert/strict";
import { claimPortRange } from "../bench/port_claims.ts";
import { basePortForSeed, type PartHolders, planNemesis, runSoak, seedPortsFree } from "./soak.ts";
import { newSeed, randomInt, seededRandom } from "./seeded_random.ts";

const SOAK_SECONDS = 15;
const SERVERS = 6;

/** Parts of 6 instances, R=3, placed at random (placement does not matter to the plan). */
function _parts(seed: number, count: number): PartHolders[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => {
    const holders = new Set<number>();
    while (holders.size < 3) holders.add(randomInt(random, 0, 5));
    return { size: 256 * 1024, holders: [...holders] };
  });
}

Deno.test("planNemesis() is a pure function of the seed, never exceeds R-1 bad holders of a part and keeps R instances up", () => {
  // Few parts leave some sets of R+1 instances holding no part whole: the budget
  // of the parts alone would let them all go down, and uploads could not place R copies.
  for (const parts of [_parts(9, 40), _parts(5, 8)]) {
    for (const seed of [1, 2, 42, 2 ** 32 - 1]) {
      const plan = planNemesis(seed, 120_000, parts, 3, 3);
      assert.deepEqual(planNemesis(seed, 120_000, parts, 3, 3), plan);
      assert.notDeepEqual(planNemesis(seed + 1, 120_000, parts, 3, 3), plan);
      const kinds = new Set(plan.map((step) => step.action.type));
      assert.deepEqual([...kinds].sort(), ["corrupt", "interrupt", "kill", "restore", "start"]);
      // Replay the schedule and check the budget after every step.
      const down = new Set<number>();
      const corrupt = new Set<string>();
      for (const { action } of plan) {
        if (action.type === "kill") down.add(action.instance);
        if (action.type === "start") down.delete(action.instance);
        if (action.type === "corrupt") corrupt.add(`${action.instance}:${action.part}`);
        if (action.type === "restore") corrupt.delete(`${action.instance}:${action.part}`);
        parts.forEach((part, index) => {
          const bad = part.holders.filter((h) => down.has(h) || corrupt.has(`${h}:${index}`));
          assert.ok(bad.length <= 2, `seed ${seed}: part ${index} has ${bad.length} bad holders`);
        });
        assert.ok(down.size <= 6 - 3, `seed ${seed}: ${down.size} of 6 instances down at once`);
      }
    }
  }
});

Deno.test(`soak: ${SOAK_SECONDS}s chaos (6 instances, R=3, kills, corruption, interrupted clients)`, async () => {
  let seed = Number(Deno.env.get("FTS_SOAK_SEED") ?? newSeed());
  // A seed fixes the ports; pick another if this one's are taken (unless it was asked for),
  // or claimed by another test, whose killed instances leave their ports free a while.
  const claimed = (s: number) =>
    seedPortsFree(s, SERVERS) && claimPortRange(basePortForSeed(s), SERVERS);
  while (!Deno.env.get("FTS_SOAK_SEED") && !claimed(seed)) seed = newSeed();
  const lines: string[] = [];
  const report = await runSoak({
    seconds: SOAK_SECONDS,
    seed,
    servers: SERVERS,
    log: (line) => lines.push(line),
    // `deno test --parallel` runs other test modules in this process too.
    checkOwnDescriptors: false,
  });
  console.log(
    `soak seed ${seed}: ${report.fetches} fetches, ${report.uploads} uploads, ${report.resumed} ` +
      `resumed, nemesis ${JSON.stringify(report.nemesis)}`,
  );
  assert.deepEqual(
    report.violations,
    [],
    `soak failed; replay with FTS_SOAK_SEED=${seed} or deno task soak --seconds ${SOAK_SECONDS} ` +
      `--seed ${seed}\n${lines.join("\n")}`,
  );
  assert.ok(report.fetches > 0 && report.uploads > 0, "no transfer completed");
  assert.ok(report.nemesis.kill + report.nemesis.corrupt > 0, "the nemesis did nothing");
});
