/**
 * A manifest.json holding garbage: every command says the manifest is
 * damaged and to restore it, in one line, instead of "Internal server
 * error" (fetch) or "is the cluster running?" (rm, mv), and changes nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startCluster, type TestCluster } from "./harness.ts";

Deno.test("corrupt manifest.json: fetch, rm, ls, status and repair each say in one line it is damaged and to restore it", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "a.bin": 10_000 } });
  try {
    const manifest = join(cluster.dir, "manifest.json");
    await Deno.writeTextFile(manifest, "garbage{{{");
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const cases: [string, string[]][] = [
      ["fetch", ["fetch", "a.bin", dest]],
      // As the operator, whose file a.bin is (an identity that does not exist is refused first).
      ["rm", ["rm", "a.bin", "--operator"]],
      ["ls", ["ls"]],
      ["status", ["status"]],
      ["repair", ["repair", "--dry-run"]],
    ];
    await _eachSaysDamaged(cluster, cases, /[Mm]anifest is malformed: not valid JSON/);
    // The instances name the file.
    const fetch = await cluster.fts(["fetch", "a.bin", dest]);
    assert.match(
      fetch.stderr,
      new RegExp(`cannot read the manifest in ${manifest.replaceAll("/", "\\/")}`),
    );
    assert.equal(
      await Deno.readTextFile(manifest),
      "garbage{{{",
      "the damaged manifest was changed",
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("damaged manifest journal: fetch, upload, rm, ls and status each say in one line it is damaged and to restore it", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "a.bin": 10_000 } });
  try {
    const journal = join(cluster.dir, "manifest.journal");
    await Deno.writeTextFile(journal, "garbage\n", { append: true });
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const source = join(cluster.work, "src", "a.bin");
    const cases: [string, string[]][] = [
      ["fetch", ["fetch", "a.bin", dest]],
      ["upload", ["upload", source, "--as", "b.bin", "--operator"]],
      ["rm", ["rm", "a.bin", "--operator"]],
      ["ls", ["ls"]],
      ["status", ["status"]],
    ];
    await _eachSaysDamaged(
      cluster,
      cases,
      /Manifest journal is malformed: bad change header garbage/,
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("manifest.json with text after its closing line is refused as damaged, not read short", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1, files: { "a.bin": 10_000 } });
  try {
    const manifest = join(cluster.dir, "manifest.json");
    await Deno.writeTextFile(manifest, "garbage{{{\n", { append: true });
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    await _eachSaysDamaged(
      cluster,
      [["ls", ["ls"]], ["status", ["status"]], ["fetch", ["fetch", "a.bin", dest]]],
      /[Mm]anifest is malformed: not valid JSON/,
    );
  } finally {
    await cluster.stop();
  }
});

/** Each command fails with one line naming the damage (`said`) and the remedy. */
async function _eachSaysDamaged(
  cluster: TestCluster,
  cases: [string, string[]][],
  said: RegExp,
): Promise<void> {
  for (const [what, args] of cases) {
    const run = await cluster.fts(args);
    assert.equal(run.code, 1, `${what}: ${run.stderr}`);
    const lines = run.stderr.trim().split("\n").filter((line) => !/new identity/.test(line));
    assert.equal(lines.length, 1, `${what}: ${run.stderr}`);
    assert.doesNotMatch(lines[0]!, /Internal server error|is the cluster running/, what);
    assert.match(lines[0]!, said, what);
    assert.match(lines[0]!, /restore it from a backup/, what);
  }
}
