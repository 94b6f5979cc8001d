/** acquireFileLock (lib/base/lock.ts) across real processes. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "./unit_helpers.ts";

const _WORKER = new URL("./file_lock_worker.ts", import.meta.url).pathname;

Deno.test("acquireFileLock: six processes taking and releasing one job lock 300 times each never hold it together nor fail", async () => {
  await withTempDir("fts-file-lock-", async (dir) => {
    // Each release deletes the lock file: a process that found it, then
    // opened it just after it was deleted, once failed with NotFound.
    const runs = Array.from({ length: 6 }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", _WORKER, join(dir, "job.lock"), join(dir, "holder"), "300"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output());
    for (const output of await Promise.all(runs)) {
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});
