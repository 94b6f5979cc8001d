/**
 * Errors that must say what is true and what to do: a cluster whose ports
 * are taken names the ports and what holds them, rather than only how many
 * instances failed, and a fetch that races the owner's --replace says the
 * file changed, rather than that every replica failed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePortRange,
  FtsProcess,
  runFts,
  tempDir,
  waitForVerifiedParts,
  writeRandomFile,
} from "./harness.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import { portFree } from "../lib/base/ports.ts";

Deno.test("errors: fts cluster with 2 of its 4 ports taken names them and their holder, starts nothing", async () => {
  const work = await tempDir("fts-taken-");
  const base = freePortRange(4);
  // This test process holds two of the ports, as another program would.
  const holders = [base + 1, base + 3].map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  try {
    const started = await runFts(
      [
        "cluster",
        "--servers",
        "4",
        "--base-port",
        String(base),
        "--replicas",
        "2",
        "--data",
        join(work, "data"),
        "--heal-after",
        "0",
        "--quiet",
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(started.code, 1, started.stderr);
    const line = started.stderr.trim();
    assert.match(line, new RegExp(`port ${base + 1} is in use by pid ${Deno.pid} \\(deno\\)`));
    assert.match(line, new RegExp(`port ${base + 3} is in use by pid ${Deno.pid} \\(deno\\)`));
    assert.doesNotMatch(line, /instances failed to start/);
    assert.equal(line.split("\n").length, 1, "one line");
    // Nothing was started on the free ports, nor recorded: other flags are no contradiction.
    for (const port of [base, base + 2]) assert.ok(portFree(port), `port ${port} was taken`);
    await assert.rejects(Deno.stat(join(work, "data")), Deno.errors.NotFound);
  } finally {
    for (const holder of holders) holder.close();
    await Deno.remove(work, { recursive: true });
  }
});

/**
 * Fetches NAME (2 MiB at 128 KiB/s) from a new cluster, and after 2 s (some
 * parts in, a partial file and its control file written) runs `change`;
 * returns the fetch's result and its destination.
 */
async function _fetchRacing(
  name: string,
  change: (cluster: Awaited<ReturnType<typeof startDirectCluster>>) => Promise<void>,
  options: { interrupt?: boolean } = {},
): Promise<{
  code: number;
  stderr: string;
  dest: string;
  again?: { code: number; stderr: string };
}> {
  const cluster = await startDirectCluster({
    servers: 2,
    replicas: 1,
    partSize: "64KiB",
    files: { [name]: 2 * 1024 * 1024 },
  });
  let fetch: FtsProcess | undefined;
  try {
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    fetch = new FtsProcess(["fetch", name, dest, "--limit-rate", "128KiB", "--data", cluster.dir]);
    if (options.interrupt) {
      // Interrupted once a part is verified (a loaded machine may take more than 2 s).
      await waitForVerifiedParts(join(dest, `${name}.fts-state`), 1);
      fetch.kill("SIGINT");
    } else {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    const interrupted = options.interrupt ? await fetch.result() : undefined;
    await change(cluster);
    const { code, stderr } = interrupted ?? await fetch.result();
    const listed = [...Deno.readDirSync(dest)].map((e) => e.name).sort().join();
    // After an interrupted fetch and the change: the same fetch again.
    const again = options.interrupt ? await cluster.fts(["fetch", name, dest]) : undefined;
    return { code, stderr, dest: listed, ...(again ? { again } : {}) };
  } finally {
    fetch?.kill();
    await fetch?.result().catch(() => {});
    await cluster.stop();
  }
}

Deno.test("errors: a fetch (2 MiB at 128 KiB/s) racing upload --replace says the file changed, not all replicas failed", async () => {
  const result = await _fetchRacing("r.bin", async (cluster) => {
    const other = join(cluster.work, "other.bin");
    await writeRandomFile(other, 2 * 1024 * 1024, 99);
    const replaced = await cluster.fts([
      "upload",
      other,
      "--as",
      "r.bin",
      "--replace",
      "--operator",
    ]);
    assert.equal(replaced.code, 0, replaced.stderr);
  });
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /"r\.bin" changed while it was being fetched .*run the same command again/,
  );
  assert.doesNotMatch(result.stderr, /replicas failed/);
});

Deno.test("errors: a fetch racing rm says the file was removed, and leaves no partial download behind", async () => {
  const result = await _fetchRacing("gone.bin", async (cluster) => {
    const removed = await cluster.fts(["rm", "gone.bin", "--operator"]);
    assert.equal(removed.code, 0, removed.stderr);
  });
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /"gone\.bin" was removed or renamed while it was being fetched; its partial download was removed/,
  );
  // The destination lists nothing: no partial file, control file or lock.
  assert.equal(result.dest, "");
});

Deno.test("errors: a fetch of a name removed since an interrupted fetch names the partial file left", async () => {
  const result = await _fetchRacing("left.bin", async (cluster) => {
    // The fetch was interrupted (SIGINT) a moment ago; now the file goes.
    const removed = await cluster.fts(["rm", "left.bin", "--operator"]);
    assert.equal(removed.code, 0, removed.stderr);
  }, { interrupt: true });
  assert.equal(result.code, 130, result.stderr);
  assert.equal(result.dest, "left.bin.fts-partial,left.bin.fts-state");
  assert.equal(result.again?.code, 1, result.again?.stderr);
  assert.match(
    result.again!.stderr,
    /No file named "left\.bin" in the cluster.*left\.bin\.fts-partial \(.*\) is left from an earlier fetch of it: delete it and left\.bin\.fts-state if the file is gone for good/,
  );
});
