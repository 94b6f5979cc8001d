/**
 * One key's quota of published bytes through rm, mv, a replace and
 * concurrent uploads, on a running cluster (file store or etcd): each step
 * is judged by the bytes its files hold then, whichever instance takes the
 * request, and of three uploads at once where one fits, exactly one lands.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runFts, type RunResult, writeRandomFile } from "./harness.ts";

const KiB = 1024;
/** The instances' cache of the policy (WRITERS_CACHE_MS), and some room. */
const POLICY_REACH_MS = 1_500;

export async function quotaScenario(
  fts: (args: string[]) => Promise<RunResult>,
  work: string,
): Promise<void> {
  const me = join(work, "quota-me.json");
  const key = (await runFts(["whoami", "--identity", me])).stdout.trim();
  const set = await fts(["writers", "add", key, "--quota", "100KiB"]);
  assert.equal(set.code, 0, set.stderr);
  await new Promise((r) => setTimeout(r, POLICY_REACH_MS));
  let seed = 100;
  const upload = async (name: string, size: number, ...extra: string[]) => {
    const path = join(work, `src-${name}-${seed}`);
    await writeRandomFile(path, size, seed++);
    return await fts(["upload", path, "--as", name, "--identity", me, ...extra]);
  };
  const ok = (result: RunResult, what: string) =>
    assert.equal(result.code, 0, what + result.stderr);
  const overQuota = (result: RunResult, held: string, what: string) => {
    assert.equal(result.code, 1, `${what}: ${result.stderr}`);
    assert.match(
      result.stderr,
      new RegExp(`over its quota of 100 KiB: .* hold ${held},`),
      `${what}: ${result.stderr}`,
    );
  };

  for (const name of ["a", "b", "c"]) ok(await upload(name, 30 * KiB), name);
  // Renamed, a file still counts once.
  ok(await fts(["mv", "a", "a2", "--identity", me]), "mv");
  overQuota(await upload("d", 30 * KiB), "90.0 KiB", "d after mv");
  // Removed, it no longer counts.
  ok(await fts(["rm", "b", "--identity", me]), "rm");
  ok(await upload("d", 30 * KiB), "d after rm");
  // A replace counts the difference: 90 - 30 + 40 = 100 fits, + 41 does not.
  ok(await upload("c", 40 * KiB, "--replace"), "replace");
  overQuota(await upload("c", 41 * KiB, "--replace"), "60.0 KiB", "replace past the quota");
  // 70 KiB held: of three uploads of 30 KiB at once, exactly one fits.
  ok(await fts(["rm", "d", "--identity", me]), "rm d");
  const racing = await Promise.all(["e1", "e2", "e3"].map((name) => upload(name, 30 * KiB)));
  assert.deepEqual(
    racing.map((r) => r.code).sort(),
    [0, 1, 1],
    racing.map((r) => r.stderr).join("\n"),
  );
  for (const refused of racing.filter((r) => r.code !== 0)) {
    assert.match(refused.stderr, /over its quota of 100 KiB: its published files hold 100 KiB,/);
  }
  const listed = await fts(["writers", "--json"]);
  ok(listed, "writers");
  assert.equal(JSON.parse(listed.stdout).published[key], 100 * KiB);
}
