/**
 * The space parts no file uses hold (an rm interrupted midway, an upload
 * never published) is reported, not hidden: repair (also --dry-run) and
 * `fts status` count the parts, their copies and bytes, and say when they go.
 */
import assert from "node:assert/strict";
import { startCluster, storedPartPath } from "./harness.ts";
import { putLoosePart } from "./part_signer.ts";

const KiB = 1024;
const PART = 100 * KiB;
const TWO_DAYS_AGO = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);

Deno.test("unused space: 3 parts in no file (4 copies, 1 aged 2 days) show in repair --dry-run, repair --unused-after 0 and status", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "a.bin": 300 * KiB } });
  try {
    const [p0, p1, p2] = cluster.ports.map(String) as [string, string, string];
    const put = (ids: string[], seed: number) =>
      putLoosePart(ids.map((id) => `127.0.0.1:${id}`), PART, seed);
    await put([p0, p1], 1);
    await put([p2], 2);
    const old = await put([p1], 3);
    await Deno.utime(storedPartPath(cluster.dir, p1, old), TWO_DAYS_AGO, TWO_DAYS_AGO);

    // Before, a dry run said "nothing to do" and no more.
    const dry = await cluster.fts(["repair", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /1 part no file uses would be deleted \(1 copy, 100 KiB\)/);
    assert.match(
      dry.stdout,
      /unused: 2 parts \(300 KiB in 3 copies\) no file uses; deleted after 24h00m untouched \(fts repair --unused-after\)/,
    );
    const json = JSON.parse((await cluster.fts(["repair", "--dry-run", "--json"])).stdout);
    assert.deepEqual(json.unusedKept, {
      parts: 2,
      copies: 3,
      bytes: 3 * PART,
      unusedAfterMs: 24 * 60 * 60 * 1000,
    });

    const keep = await cluster.fts(["repair", "--unused-after", "0"]);
    assert.equal(keep.code, 0, keep.stderr);
    assert.match(keep.stdout, /nothing to do, every one of 2 parts has its copies/);
    assert.match(keep.stdout, /unused: 3 parts \(400 KiB in 4 copies\) no file uses; kept/);

    const status = await cluster.fts(["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /unused: 3 parts \(400 KiB in 4 copies\) no file uses, 2 of them touched within 24h00m; deleted after 24h00m untouched/,
    );
    const report = JSON.parse((await cluster.fts(["status", "--json"])).stdout);
    assert.deepEqual(report.unused, {
      parts: 3,
      copies: 4,
      bytes: 4 * PART,
      young: 2,
      unusedAfterMs: 24 * 60 * 60 * 1000,
    });
  } finally {
    await cluster.stop();
  }
});
