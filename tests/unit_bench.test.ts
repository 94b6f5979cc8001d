/**
 * Unit tests of the benchmark's own pieces (bench/): the order contenders take
 * turns in.
 */
import assert from "node:assert/strict";
import { shuffledForRound } from "../bench/scenarios.ts";

Deno.test("shuffledForRound() gives every contender once, the same order for a round each time, and not always the same order", () => {
  const tools = ["fts", "curl", "rsync"];
  const orders = new Set<string>();
  const firsts = new Set<string>();
  for (let round = 0; round < 12; round++) {
    const order = shuffledForRound(tools, round);
    assert.deepEqual([...order].sort(), [...tools].sort());
    assert.deepEqual(shuffledForRound(tools, round), order);
    orders.add(order.join(","));
    firsts.add(order[0]!);
  }
  // Over 12 rounds each tool goes first at least once.
  assert.equal(firsts.size, tools.length);
  assert.ok(orders.size >= 3, `only ${orders.size} orders in 12 rounds`);
  // The input is left alone.
  assert.deepEqual(tools, ["fts", "curl", "rsync"]);
});
