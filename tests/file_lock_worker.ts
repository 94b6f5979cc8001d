/**
 * Takes and releases the job lock at Deno.args[0] Deno.args[2] times, each
 * time creating Deno.args[1] exclusively while it holds the lock and removing
 * it before the release: a second holder at once fails that create. Run as
 * several processes by tests/unit_file_lock.test.ts.
 */
import { acquireFileLock } from "../lib/base/lock.ts";

const [lockPath, holderPath, times] = Deno.args;
for (let i = 0; i < Number(times); i++) {
  const release = await acquireFileLock(lockPath!);
  Deno.openSync(holderPath!, { write: true, createNew: true }).close();
  Deno.removeSync(holderPath!);
  await release();
}
