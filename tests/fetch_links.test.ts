/**
 * Fetch never follows a link for its helper files (NAME.fts-lock,
 * NAME.fts-state, NAME.fts-partial): a link planted there is refused with a
 * clear error, its target is neither created nor written, and the fetch ends
 * instead of spinning.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists } from "../lib/base/fs_util.ts";
import { newDest, runFts, startCluster } from "./harness.ts";

/** Far above a refusal's time, far below "spins forever". */
const FETCH_TIMEOUT_MS = 60_000;

Deno.test("fetch: symlinks at NAME.fts-lock (dangling and to a file), .fts-state and .fts-partial are refused, nothing written through them", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "l.bin": 300 * 1024 } });
  try {
    const elsewhere = join(cluster.work, "elsewhere");
    await Deno.mkdir(elsewhere);
    const existing = join(elsewhere, "precious");
    await Deno.writeTextFile(existing, "keep me\n");
    const cases: [suffix: string, target: string][] = [
      [".fts-lock", join(elsewhere, "created-by-lock")],
      [".fts-lock", existing],
      [".fts-state", existing],
      [".fts-partial", join(elsewhere, "created-by-partial")],
      [".fts-partial", existing],
    ];
    for (const [suffix, target] of cases) {
      const dest = await newDest(cluster);
      await Deno.symlink(target, join(dest, `l.bin${suffix}`));
      const started = Date.now();
      const result = await runFts(["fetch", "l.bin", dest, "--data", cluster.dir], {
        timeoutMs: FETCH_TIMEOUT_MS,
      });
      const what = `${suffix} -> ${target}`;
      assert.ok(Date.now() - started < FETCH_TIMEOUT_MS, `${what}: fetch spun until killed`);
      assert.notEqual(result.code, 0, `${what}: fetch succeeded`);
      assert.match(result.stderr, /symbolic link|not a regular file/, what);
      assert.ok(!(await exists(join(dest, "l.bin"))), `${what}: fetched through the link`);
      assert.ok((await Deno.lstat(join(dest, `l.bin${suffix}`))).isSymlink, `${what}: link gone`);
    }
    assert.deepEqual(
      [...Deno.readDirSync(elsewhere)].map((e) => e.name),
      ["precious"],
      "a link's target was created",
    );
    assert.equal(await Deno.readTextFile(existing), "keep me\n");
  } finally {
    await cluster.stop();
  }
});
