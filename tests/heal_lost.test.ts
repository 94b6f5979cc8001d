import assert from "node:assert/strict";
import { readManifestJson, runFts, startCluster, storedPartPath } from "./harness.ts";
import { censusOnDisk } from "./replicas.ts";

const MiB = 1024 * 1024;
/** Far above what the repair needs (well under a second): a hang fails the test, not CI. */
const REPAIR_TIMEOUT_MS = 60_000;

Deno.test("repair: every replica of a part gone: names the lost part and its file, exits non-zero, invents nothing, repairs the rest (R=3)", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "k.bin": MiB + 99, "l.bin": MiB },
  });
  try {
    const before = await readManifestJson(cluster.dir);
    // Part 2 of l.bin: every copy deleted from disk while its instances stay up.
    const gone = before.files["l.bin"]!.parts[2]!;
    for (const id of gone.replicas) {
      await Deno.remove(storedPartPath(cluster.dir, id, gone.digest));
    }
    // Part 1 of k.bin: every instance holding it killed.
    const dead = before.files["k.bin"]!.parts[1]!;
    for (const id of dead.replicas) await cluster.kill(Number(id));
    const live = cluster.ports.filter((port) => !dead.replicas.includes(String(port)));

    const result = await runFts(["repair", "--data", cluster.dir], {
      timeoutMs: REPAIR_TIMEOUT_MS,
    });
    const output = result.stdout + result.stderr;
    assert.equal(result.code, 1, output);
    assert.match(result.stderr, /LOST: part 2 of "l\.bin"/);
    assert.match(result.stderr, /LOST: part 1 of "k\.bin" .*listed on /);
    assert.match(result.stderr, /fts repair: \d+ parts? without a good copy \(files: .*"l\.bin"/);

    const census = await censusOnDisk(cluster.dir, cluster.ports);
    const after = await readManifestJson(cluster.dir);
    // Lost: the deleted part, and every part whose copies were all on the killed instances.
    const killed = new Set(dead.replicas);
    const isLost = (digest: string, listed: string[]) =>
      digest === gone.digest || listed.every((id) => killed.has(id));
    for (const part of census) {
      if (isLost(part.digest, before.files[part.file]!.parts[part.index]!.replicas)) {
        assert.match(result.stderr, new RegExp(`LOST: part ${part.index} of "${part.file}"`));
        // Nothing invented: no copy appeared anywhere, and the manifest still says where it was.
        assert.deepEqual(
          after.files[part.file]!.parts[part.index]!.replicas,
          before.files[part.file]!.parts[part.index]!.replicas,
        );
        assert.deepEqual(part.good.filter((id) => live.includes(Number(id))), []);
        continue;
      }
      // Every other part was repaired onto the live instances.
      const liveGood = part.good.filter((id) => live.includes(Number(id)));
      assert.equal(liveGood.length, 3, `part ${part.index} of ${part.file}: ${part.good}`);
    }
  } finally {
    await cluster.stop();
  }
});
