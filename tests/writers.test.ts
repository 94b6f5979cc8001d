/**
 * Who may store parts, and how much, on a single-host cluster: once the
 * operator closes the cluster (`fts writers closed`), a key not on the list
 * cannot store a part (NOT_ALLOWED, nothing stored) and its `fts upload`
 * fails with one line saying what to ask for; `fts writers add` lets it in
 * with no restart of any instance. Repair still copies parts (as the
 * operator). A quota is enforced at publish (the owner's published bytes, a
 * replace counting the difference) and at part.put (the key's parts no file
 * uses yet on that instance).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { exists } from "../lib/base/fs_util.ts";
import {
  assertSameFile,
  newDest,
  readManifestJson,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import { putPartAs } from "./part_signer.ts";
import { storedPartNames } from "./replicas.ts";
import { rankInstances } from "../lib/state/placement.ts";
import { quotaScenario } from "./quota_scenario.ts";

const KiB = 1024;

/** Stores `bytes` on the instance at `port` as the identity in `identityPath`. */
function _put(port: number, identityPath: string, bytes: Uint8Array): Promise<string> {
  return putPartAs(`127.0.0.1:${port}`, identityPath, bytes);
}

Deno.test("writers closed: bad fts writers input exits 2; an unlisted key stores no part and its upload fails with one line; after fts writers add (no restart) it uploads; repair still copies", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, partSize: "64KiB" });
  try {
    const me = join(cluster.work, "me.json");
    const whoami = await cluster.fts(["whoami", "--identity", me]);
    assert.equal(whoami.code, 0, whoami.stderr);
    const key = whoami.stdout.trim();

    // Bad input: one line, exit 2, nothing changed.
    for (
      const [args, said] of [
        [["writers", "add", "ed25519:nope"], /is not a key as `fts whoami` prints it/],
        [["writers", "frobnicate"], /^fts writers: Unknown action "frobnicate"/],
        [["writers", "quota", key, "lots"], /Quota: Cannot parse size "lots"/],
      ] as const
    ) {
      const bad = await cluster.fts([...args]);
      assert.equal(bad.code, 2, `${args.join(" ")}: ${bad.stderr}`);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, said);
    }
    // A key the list lacks: the list's state, not bad usage (exit 1).
    const notListed = await cluster.fts(["writers", "rm", key]);
    assert.equal(notListed.code, 1, notListed.stderr);
    assert.match(notListed.stderr, /^fts writers: .*is not on the writers list/);
    const listed = await cluster.fts(["writers"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^writers: open/);

    const closed = await cluster.fts(["writers", "closed"]);
    assert.equal(closed.code, 0, closed.stderr);
    assert.match(closed.stdout, /^writers: closed/);
    // Within the instances' cache time of the policy.
    await new Promise((r) => setTimeout(r, 1_200));

    // A raw signed part.put by the unlisted key: refused before any byte is kept.
    const bytes = new Uint8Array(10 * KiB).fill(7);
    const port = cluster.ports[0]!;
    const refused = await _put(port, me, bytes);
    assert.match(refused, /^NOT_ALLOWED: key ed25519:\S+ is not allowed to store parts/);
    assert.ok(refused.includes(`fts writers add ${key}`), refused);
    assert.ok(!(await exists(storedPartPath(cluster.dir, String(port), await sha256Hex(bytes)))));

    // fts upload by that key: one true line, non-zero exit, nothing published.
    const src = join(cluster.work, "f.bin");
    await writeRandomFile(src, 200 * KiB, 3);
    const upload = await cluster.fts(["upload", src, "--identity", me]);
    assert.notEqual(upload.code, 0);
    const lines = upload.stderr.trim().split("\n");
    assert.equal(lines.length, 1, upload.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `key ${key} is not allowed to store parts on this cluster; ` +
          "ask the operator to run `fts writers add " + key + "`",
      ),
    );
    assert.deepEqual(Object.keys((await readManifestJson(cluster.dir)).files), []);

    // Added: the same upload works with no restart.
    const added = await cluster.fts(["writers", "add", key]);
    assert.equal(added.code, 0, added.stderr);
    assert.ok(added.stdout.includes(key), added.stdout);
    await new Promise((r) => setTimeout(r, 1_200));
    const again = await cluster.fts(["upload", src, "--identity", me]);
    assert.equal(again.code, 0, again.stderr);
    const dest = await newDest(cluster);
    const fetched = await cluster.fts(["fetch", "f.bin", dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "f.bin"), src);

    // A lost copy: repair copies it back, signed as the operator, which a closed cluster takes.
    const entry = (await readManifestJson(cluster.dir)).files["f.bin"]!;
    const part = entry.parts[0]!;
    await Deno.remove(storedPartPath(cluster.dir, part.replicas[0]!, part.digest));
    const repair = await cluster.fts(["repair", "--json"]);
    assert.equal(repair.code, 0, repair.stderr);
    assert.equal(JSON.parse(repair.stdout).failedCopies, 0, repair.stdout);
    const after = (await readManifestJson(cluster.dir)).files["f.bin"]!.parts[0]!;
    assert.equal(after.replicas.length, 2);
    for (const id of after.replicas) {
      assert.ok(await exists(storedPartPath(cluster.dir, id, part.digest)), id);
    }

    // Removed again: refused again.
    const removed = await cluster.fts(["writers", "rm", key]);
    assert.equal(removed.code, 0, removed.stderr);
    await new Promise((r) => setTimeout(r, 1_200));
    assert.match(await _put(port, me, bytes), /^NOT_ALLOWED/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("writers quota 300 KiB: publish counts published bytes (a replace the difference); part.put counts unpublished parts per instance, and fts upload stops there with one line", async () => {
  // A preloaded file sets the part size uploads use: 64 KiB.
  const cluster = await startCluster({
    servers: 2,
    replicas: 1,
    partSize: "64KiB",
    files: { "seed.bin": 1000 },
  });
  try {
    const me = join(cluster.work, "me.json");
    const key = (await cluster.fts(["whoami", "--identity", me])).stdout.trim();
    const set = await cluster.fts(["writers", "add", key, "--quota", "300KiB"]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /quota 300 KiB/);
    await new Promise((r) => setTimeout(r, 1_200));

    const file = async (name: string, size: number, seed: number) => {
      const path = join(cluster.work, name);
      await writeRandomFile(path, size, seed);
      return path;
    };
    const a = await file("a.bin", 200 * KiB, 1);
    assert.equal((await cluster.fts(["upload", a, "--identity", me])).code, 0);
    // Replacing a.bin with 250 KiB: only the difference counts, so it fits.
    const bigger = await file("a2.bin", 250 * KiB, 3);
    const replaced = await cluster.fts([
      "upload",
      bigger,
      "--as",
      "a.bin",
      "--replace",
      "--identity",
      me,
    ]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal((await readManifestJson(cluster.dir)).files["a.bin"]!.size, 250 * KiB);
    // 250 KiB published + 200 KiB > 300 KiB: refused before a byte is sent, with one line.
    const b = await file("b.bin", 200 * KiB, 2);
    const storedBefore = (await storedPartNames(join(cluster.dir, "instances"))).length;
    const over = await cluster.fts(["upload", b, "--identity", me]);
    assert.notEqual(over.code, 0);
    assert.equal(over.stderr.trim().split("\n").length, 1, over.stderr);
    assert.match(over.stderr, /over its quota of 300 KiB: its published files hold 250 KiB/);
    assert.doesNotMatch(over.stderr, /failed on every server/);
    assert.equal(
      (await storedPartNames(join(cluster.dir, "instances"))).length,
      storedBefore,
      "parts were sent, then refused",
    );
    assert.deepEqual(Object.keys((await readManifestJson(cluster.dir)).files).sort(), [
      "a.bin",
      "seed.bin",
    ]);

    // part.put: parts no file uses count on their instance.
    const raise = await cluster.fts(["writers", "quota", key, "600KiB"]);
    assert.equal(raise.code, 0, raise.stderr);
    await new Promise((r) => setTimeout(r, 1_200));
    const port = cluster.ports[0]!;
    const results: string[] = [];
    for (let seed = 10; seed < 20; seed++) {
      results.push(await _put(port, me, new Uint8Array(64 * KiB).fill(seed)));
      if (results.at(-1) !== "stored") break;
    }
    assert.match(
      results.at(-1)!,
      new RegExp(
        `^NOT_ALLOWED: .*over its quota of 600 KiB: its parts no file uses yet on instance ${port} hold`,
      ),
    );
    // What frees that room is not fts rm, which the quota of published files advises.
    assert.match(results.at(-1)!, /uploads that did not finish; ask the operator to delete them/);
    // Another instance keeps its own count: the key may still store there.
    assert.equal(await _put(cluster.ports[1]!, me, new Uint8Array(64 * KiB).fill(99)), "stored");
    // fts upload into the full instance: stopped at part.put with the instance's one line.
    // Its published files (a.bin) go first, so that the quota's other half lets it try; and
    // its parts are picked so that at least one goes to the full instance (R=1).
    assert.equal((await cluster.fts(["rm", "a.bin", "--identity", me])).code, 0);
    let c = "";
    for (let seed = 4; c === ""; seed++) {
      const path = await file("c.bin", 5 * 64 * KiB, seed);
      const bytes = await Deno.readFile(path);
      const ids = cluster.ports.map(String);
      for (let at = 0; at < bytes.length && c === ""; at += 64 * KiB) {
        const digest = await sha256Hex(bytes.subarray(at, at + 64 * KiB));
        if (rankInstances(digest, ids)[0] === String(port)) c = path;
      }
    }
    const full = await cluster.fts(["upload", c, "--identity", me]);
    assert.notEqual(full.code, 0);
    assert.equal(full.stderr.trim().split("\n").length, 1, full.stderr);
    assert.match(full.stderr, /over its quota of 600 KiB: its parts no file uses yet on instance/);
    // Dropping the quota lets it store on the first instance again.
    assert.equal((await cluster.fts(["writers", "quota", key, "none"])).code, 0);
    await new Promise((r) => setTimeout(r, 1_200));
    assert.equal(await _put(port, me, new Uint8Array(64 * KiB).fill(100)), "stored");
  } finally {
    await cluster.stop();
  }
});

Deno.test("writers: a damaged writers.json or operator key is named to the uploader, not an internal error", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "a.bin": 5000 } });
  try {
    const source = join(cluster.work, "up.bin");
    await writeRandomFile(source, 20 * KiB, 9);
    const me = ["--identity", join(cluster.work, "me.json")];
    const damaged = [
      [join(cluster.dir, "writers.json"), "{broken", /writers\.json .*fts writers/],
      [
        join(cluster.dir, "operator_identity.json"),
        '{"format":"fts-identity","owner":"ed25519:short"}',
        /operator_identity\.json .*restore the operator's key/,
      ],
    ] as const;
    for (const [path, text, said] of damaged) {
      const saved = await exists(path) ? await Deno.readFile(path) : undefined;
      await Deno.writeTextFile(path, text);
      // Instances read these at most once a second.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const refused = await cluster.fts(["upload", source, ...me]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /The cluster cannot read /);
      assert.match(refused.stderr, said);
      assert.doesNotMatch(refused.stderr, /Internal server error/);
      if (saved) await Deno.writeFile(path, saved);
      else await Deno.remove(path);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const accepted = await cluster.fts(["upload", source, ...me]);
    assert.equal(accepted.code, 0, accepted.stderr);
  } finally {
    await cluster.stop();
  }
});

Deno.test("writers quota 100 KiB: rm, mv and a replace change what counts; of 3 uploads at once where one fits, one lands", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, partSize: "64KiB" });
  try {
    await quotaScenario((args) => cluster.fts(args), cluster.work);
  } finally {
    await cluster.stop();
  }
});
