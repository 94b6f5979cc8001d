import assert from "node:assert/strict";
import { exists } from "../lib/base/fs_util.ts";
import { FtsProcess, runFts } from "./harness.ts";

/** Processes whose command line mentions `text` (the demo's temporary directory). */
async function _processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll(
        "\0",
        " ",
      );
      if (cmdline.includes(text)) found.push(`${entry.name}: ${cmdline}`);
    } catch { /* exited meanwhile */ }
  }
  return found;
}

Deno.test("demo: runs end to end, every byte checks out, nothing is left behind", async () => {
  const result = await runFts(["demo"], { timeoutMs: 180_000 });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const out = result.stdout;
  const work = /working in (\S+),/.exec(out)?.[1];
  assert.ok(work, out);
  for (
    const step of [
      /1\. A sample file: 24\.0 MiB/,
      /\$ fts preload sample\.bin --servers 10 --replicas 3 --part-size 2MiB/,
      /ready: 10 instances on 127\.0\.0\.1:\d+-\d+/,
      /client 1: done in .*, 12 parts verified, \d+ failovers?/,
      /client 2: done in .*, 12 parts verified, \d+ failovers?/,
      /interrupted \(exit 130\) with \d+ of 12 parts verified on disk/,
      /resumed: \d+ parts were already there, \d+ fetched/,
      /all 3 copies match: sha256 [0-9a-f]{16}/,
      /Done in .*every byte checked out\./,
    ]
  ) assert.match(out, step);
  // The resume fetched only what was missing.
  const [, present, fetched] = /resumed: (\d+) parts were already there, (\d+) fetched/.exec(out)!;
  assert.equal(Number(present) + Number(fetched), 12);
  assert.ok(Number(present) >= 5, out);
  assert.match(out, new RegExp(`Cleaned up: cluster stopped, ${work} removed\\.`));
  assert.equal(await exists(work), false, "temporary directory removed");
  assert.deepEqual(await _processesMentioning(work), [], "no process left running");
  assert.equal(result.stderr, "");
});

Deno.test("demo: SIGINT mid-run stops the cluster and removes its files (exit 130)", async () => {
  const demo = new FtsProcess(["demo"]);
  const [, work] = await demo.waitFor(/working in (\S+),/, 60_000);
  await demo.waitFor(/ready: 10 instances/, 60_000);
  assert.ok((await _processesMentioning(work!)).length >= 10, "the cluster runs");
  // Only the demo gets the signal (no terminal sends it to the whole group here).
  demo.kill("SIGINT");
  const result = await demo.result();
  assert.equal(result.code, 130, result.stdout + result.stderr);
  assert.match(result.stdout, /Cleaned up: cluster stopped, .* removed\./);
  assert.match(result.stderr, /^fts demo: interrupted\n$/);
  assert.equal(await exists(work!), false, "temporary directory removed");
  const deadline = Date.now() + 10_000;
  let left = await _processesMentioning(work!);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    left = await _processesMentioning(work!);
  }
  assert.deepEqual(left, [], "no process left running");
});

Deno.test("demo: a --size too small for the tour to kill and interrupt mid-fetch is refused", async () => {
  const small = await runFts(["demo", "--size", "4MiB"]);
  assert.equal(small.code, 2, small.stderr);
  assert.match(small.stderr, /--size must be 8MiB\.\.256MiB, got 4194304 bytes/);
});
