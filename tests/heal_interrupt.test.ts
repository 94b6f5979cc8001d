import assert from "node:assert/strict";
import { FtsProcess, startCluster } from "./harness.ts";
import { censusOnDisk, offCount, strayTemps, waitUntil } from "./replicas.ts";
import { lstatOrUndefined } from "../lib/base/fs_util.ts";

const MiB = 1024 * 1024;

Deno.test("repair: killed halfway (SIGKILL mid-copy), run again: finishes the job and leaves no stray temp files (R=3, 2 down)", async () => {
  const cluster = await startCluster({ servers: 6, replicas: 3, files: { "j.bin": 3 * MiB } });
  try {
    const [k1, k2, ...live] = cluster.ports as [number, number, ...number[]];
    await cluster.kill(k1);
    await cluster.kill(k2);
    const missing = async () =>
      (await censusOnDisk(cluster.dir, live)).reduce(
        (n, p) => n + Math.max(0, 3 - p.good.length),
        0,
      );
    const needed = await missing();
    assert.ok(needed > 2, "the killed instances held too little to interrupt a repair of it");

    // A slow repair (256 KiB parts at 128 KiB/s) is killed once it has made one copy: the
    // others are mid-stream then.
    const slow = new FtsProcess(["repair", "--limit-rate", "128KiB", "--data", cluster.dir]);
    await slow.waitFor(/copied part \d+ of "j\.bin"/, 60_000);
    slow.kill("SIGKILL");
    await slow.status;
    const halfway = await missing();
    assert.ok(halfway > 0 && halfway < needed, `${halfway} of ${needed} copies still missing`);

    const rerun = await cluster.fts(["repair", "--limit-rate", "0"]);
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    const census = await censusOnDisk(cluster.dir, live);
    assert.deepEqual(offCount(census, 3), []);
    for (const part of census) {
      assert.deepEqual(part.listed, part.good, `part ${part.index}`);
      assert.deepEqual(part.bad, [], `part ${part.index}`);
    }
    // The targets drop a cut-off copy's temp file as soon as its connection breaks.
    await waitUntil(
      async () => {
        const stray = await strayTemps(cluster.dir);
        return stray.length === 0 || stray.join(", ");
      },
      10_000,
      "no temp files",
    );

    const third = await cluster.fts(["repair"]);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, /nothing to do/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("repair: a copy whose target is killed midway leaves a temp file there, removed when the target starts and by a repair, even once its pid names a live process again (R=2)", async () => {
  const cluster = await startCluster({ servers: 4, replicas: 2, files: { "t.bin": 3 * MiB } });
  let slow: FtsProcess | undefined;
  try {
    await cluster.kill(cluster.ports[0]!);
    // Slow copies (256 KiB parts at 64 KiB/s): a target is mid-copy for seconds.
    slow = new FtsProcess(["repair", "--limit-rate", "64KiB", "--data", cluster.dir]);
    let temp = "";
    await waitUntil(
      async () => {
        temp = (await strayTemps(cluster.dir))[0] ?? "";
        return temp !== "" || "no copy under way yet";
      },
      30_000,
      "a copy to be under way",
    );
    const target = Number(temp.split("/").at(-3));
    await cluster.kill(target);
    slow.kill("SIGKILL");
    await slow.status;
    slow = undefined;
    assert.ok(lstatOrUndefined(temp), "the killed target's temp file is gone already");

    // Pids are reused: the dead writer's pid may name a live process by the time anyone
    // looks (here this test's own), and the leftovers are more than a minute old by then.
    const tmp = temp.slice(0, temp.lastIndexOf("/"));
    const reused = `${tmp}/${Deno.pid}.1.tmp`;
    const kept = `${cluster.work}/leftover.tmp`;
    await Deno.copyFile(temp, kept);
    await Deno.rename(temp, reused);
    const old = new Date(Date.now() - 10 * 60_000);
    await Deno.utime(reused, old, old);

    await cluster.start(target);
    assert.equal(
      lstatOrUndefined(reused),
      undefined,
      "the target's start left the stale temp file",
    );
    // Again while the instance runs, as a writer that died after it started would leave one.
    await Deno.copyFile(kept, reused);
    await Deno.utime(reused, old, old);
    const repair = await cluster.fts(["repair"]);
    assert.equal(repair.code, 0, repair.stdout + repair.stderr);
    assert.deepEqual(await strayTemps(cluster.dir), [], "a repair left the stale temp files");
  } finally {
    slow?.kill("SIGKILL");
    await slow?.status;
    await cluster.stop();
  }
});
