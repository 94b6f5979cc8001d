/**
 * `fts fetch --fsync` flushes the file and its directory before the file is
 * put in place; without it a fetch flushes nothing (like curl and rsync) and
 * its control file is tied to the boot instead. Observed with strace.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSameFile, DENO, MAIN, startCluster, straceUnusable } from "./harness.ts";

/** Runs `fts fetch` under strace; returns the flush calls made on anything under `dest`. */
async function _flushesUnder(dest: string, args: string[]): Promise<string[]> {
  const log = join(dest, "..", `strace-${crypto.randomUUID().slice(0, 8)}.log`);
  const output = await new Deno.Command("strace", {
    args: [
      "-f",
      "-qq",
      "-y",
      "-e",
      "trace=fsync,fdatasync",
      "-o",
      log,
      DENO,
      "run",
      "-A",
      MAIN,
      ...args,
    ],
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const lines = (await Deno.readTextFile(log)).split("\n");
  return lines.filter((line) => /f(data)?sync\(/.test(line) && line.includes(dest));
}

Deno.test({
  name: "fetch: --fsync flushes the file and its directory; by default nothing is flushed",
  ignore: await straceUnusable(),
  async fn() {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      files: { "s.bin": 2 * 1024 * 1024 },
    });
    try {
      const common = ["--data", cluster.dir];
      for (const mode of ["default", "fsync"]) {
        const dest = join(cluster.work, `dest-${mode}`);
        await Deno.mkdir(dest);
        const extra = mode === "fsync" ? ["--fsync"] : [];
        const flushes = await _flushesUnder(dest, ["fetch", "s.bin", dest, ...common, ...extra]);
        await assertSameFile(join(dest, "s.bin"), join(cluster.work, "src", "s.bin"));
        if (mode === "default") {
          assert.deepEqual(flushes, []);
        } else {
          assert.ok(flushes.some((l) => l.includes("s.bin.fts-partial>")), flushes.join("\n"));
          assert.ok(flushes.some((l) => l.includes(`${dest}>`)), flushes.join("\n"));
        }
      }
    } finally {
      await cluster.stop();
    }
  },
});
