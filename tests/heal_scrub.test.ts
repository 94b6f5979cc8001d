import assert from "node:assert/strict";
import { join } from "node:path";
import { ProtocolError } from "../lib/wire/errors.ts";
import { Peer } from "../lib/client/peer.ts";
import {
  assertSameFile,
  damageFile,
  FtsProcess,
  readManifestJson,
  startCluster,
  storedPartPath,
} from "./harness.ts";
import { censusOnDisk, offCount } from "./replicas.ts";
import { partSigner } from "./part_signer.ts";

const MiB = 1024 * 1024;

async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("scrub: corrupt copies on two instances are found, quarantined and repaired; a fetch meanwhile gets only good bytes (R=3)", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "c.bin": 3 * MiB, "d.bin": MiB },
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    // Per file, one rotten copy on each of two different instances (of two different parts).
    const damaged: { file: string; index: number; id: string; digest: string }[] = [];
    for (const file of ["c.bin", "d.bin"]) {
      const [p0, p1] = manifest.files[file]!.parts;
      const first = p0!.replicas[0]!;
      const second = p1!.replicas.find((id) => id !== first)!;
      damaged.push({ file, index: 0, id: first, digest: p0!.digest });
      damaged.push({ file, index: 1, id: second, digest: p1!.digest });
    }
    for (const { id, digest } of damaged) {
      await damageFile(storedPartPath(cluster.dir, id, digest), 4096, 64);
    }

    // c.bin is fetched while the scrub runs; d.bin is left to the scrub alone.
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetching = cluster.spawnFetch("c.bin", dest, ["--json"]);
    const scrub = await cluster.fts(["scrub"]);
    const fetched = await fetching.result();
    assert.equal(scrub.code, 0, scrub.stdout + scrub.stderr);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "c.bin"), join(cluster.work, "src", "c.bin"));
    // The fetch may run into a rotten copy first; it reports it, which quarantines it too.
    const reportedByFetch = new Set(
      fetched.stderr.split("\n").filter((line) => line.startsWith("{")).map((line) =>
        JSON.parse(line)
      ).filter((e) => e.type === "mismatch").flatMap((e) =>
        e.replicas.map((id: string) => `c.bin:${e.part}:${id}`)
      ),
    );

    for (const { file, index, id, digest } of damaged) {
      assert.ok(
        await _exists(join(cluster.dir, "instances", id, "quarantine", digest)),
        `copy of part ${index} of ${file} on ${id} is not quarantined\n${scrub.stdout}`,
      );
      if (reportedByFetch.has(`${file}:${index}:${id}`)) continue;
      assert.ok(
        scrub.stderr.includes(`corrupt: the copy of part ${index} of "${file}" on ${id} `),
        `scrub did not find part ${index} of ${file} on ${id}:\n${scrub.stderr}`,
      );
    }
    // ... and repaired: every part has 3 good copies again, listed in the manifest, and
    // no instance stores a copy that fails its digest.
    const census = await censusOnDisk(cluster.dir, cluster.ports);
    assert.deepEqual(offCount(census, 3), []);
    for (const part of census) {
      assert.deepEqual(part.bad, [], `part ${part.index} of ${part.file}`);
      assert.deepEqual(part.listed, part.good, `part ${part.index} of ${part.file}`);
    }
    // The new copy went to an instance whose disk had not just rotted it (three are free).
    for (const { file, index, id, digest } of damaged) {
      const good = census.find((part) => part.digest === digest)!.good;
      assert.ok(!good.includes(id), `part ${index} of ${file} copied back to ${id}`);
    }

    // A second fetch from scratch is served good bytes only.
    const dest2 = join(cluster.work, "dest2");
    await Deno.mkdir(dest2);
    const again = await cluster.fts(["fetch", "c.bin", dest2, "--json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).digestMismatches, 0);
    await assertSameFile(join(dest2, "c.bin"), join(cluster.work, "src", "c.bin"));

    // Nothing left for a second scrub.
    const rescrub = await cluster.fts(["scrub"]);
    assert.equal(rescrub.code, 0, rescrub.stderr);
    assert.doesNotMatch(rescrub.stdout + rescrub.stderr, /corrupt|copied/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("part.report: an instance stops serving a copy whose digest fails when a client reports it", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "e.bin": MiB } });
  try {
    const part = (await readManifestJson(cluster.dir)).files["e.bin"]!.parts[2]!;
    const id = part.replicas[0]!;
    await damageFile(storedPartPath(cluster.dir, id, part.digest), 0, 1);
    const peer = await Peer.connect(`127.0.0.1:${id}`);
    try {
      assert.equal(await peer.report(part.digest), true);
      await assert.rejects(
        peer.requestPart(part.digest, 0, part.size),
        (error) => error instanceof ProtocolError && error.code === "QUARANTINED",
      );
      // part.verify agrees: the copy is out of service.
      assert.equal(await peer.verifyPart(part.digest), "quarantined");
    } finally {
      peer.close();
    }
    // A good copy reported by mistake stays in service.
    const other = part.replicas[1]!;
    const good = await Peer.connect(`127.0.0.1:${other}`);
    try {
      assert.equal(await good.report(part.digest), false);
      assert.equal(await good.verifyPart(part.digest), "ok");
    } finally {
      good.close();
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("scrub: a copy that cannot be read (a directory in its place) is quarantined, and the instance's other copies are still checked (R=2)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "64KiB",
    files: { "e.bin": 40 * 64 * 1024 },
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    const parts = manifest.files["e.bin"]!.parts;
    // The instance holding the most parts: one becomes unreadable, every other one rots.
    const counts = new Map<string, number>();
    for (const part of parts) {
      for (const id of part.replicas) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    const held = parts.filter((part) => part.replicas.includes(victim)).map((p) => p.digest).sort();
    assert.ok(held.length >= 4, `instance ${victim} holds ${held.length} parts`);
    const [unreadable, ...rotten] = held;
    const path = storedPartPath(cluster.dir, victim, unreadable!);
    await Deno.remove(path);
    await Deno.mkdir(path);
    for (const digest of rotten) {
      await damageFile(storedPartPath(cluster.dir, victim, digest), 1000, 1);
    }

    const scrub = await cluster.fts(["scrub"]);
    assert.equal(scrub.code, 0, scrub.stdout + scrub.stderr);
    assert.match(scrub.stdout, new RegExp(`${held.length} corrupt copies quarantined`));
    // Every copy now on the victim is good, and every part has 2 good copies, listed.
    const census = await censusOnDisk(cluster.dir, cluster.ports);
    assert.deepEqual(offCount(census, 2), []);
    for (const part of census) {
      assert.deepEqual(part.listed, part.good, `part ${part.index}: listed ${part.listed}`);
    }
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetched = await cluster.fts(["fetch", "e.bin", dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "e.bin"), join(cluster.work, "src", "e.bin"));
  } finally {
    await cluster.stop();
  }
});

Deno.test("part.put: a rotten copy of the same size is replaced by the body, not taken as stored", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "g.bin": 200_000 } });
  try {
    const part = (await readManifestJson(cluster.dir)).files["g.bin"]!.parts[0]!;
    const target = cluster.ports.map(String).find((id) => !part.replicas.includes(id))!;
    // The instance holds a rotten copy of that size that nobody checked.
    const good = await Deno.readFile(storedPartPath(cluster.dir, part.replicas[0]!, part.digest));
    const planted = storedPartPath(cluster.dir, target, part.digest);
    await Deno.mkdir(join(planted, ".."), { recursive: true });
    await Deno.writeFile(planted, good);
    await damageFile(planted, 1000, 1);
    const peer = await Peer.connect(`127.0.0.1:${target}`);
    try {
      const { stored } = await peer.putPart(
        part.digest,
        good.length,
        (async function* () {
          yield good;
        })(),
        await partSigner(peer),
      );
      assert.equal(stored, true);
    } finally {
      peer.close();
    }
    assert.deepEqual(await Deno.readFile(planted), good);
    assert.ok(await _exists(join(cluster.dir, "instances", target, "quarantine", part.digest)));
  } finally {
    await cluster.stop();
  }
});

Deno.test("status and fetch: a truncated copy is not live, a fetch reports it; all truncated is a lost part (R=2)", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "t.bin": 20_000 } });
  try {
    const part = (await readManifestJson(cluster.dir)).files["t.bin"]!.parts[0]!;
    const file = async () => {
      const status = await cluster.fts(["status", "--json"]);
      return { code: status.code, ...JSON.parse(status.stdout).files[0] };
    };
    assert.equal((await file()).minLiveReplicas, 2);
    const short = storedPartPath(cluster.dir, part.replicas[0]!, part.digest);
    await Deno.truncate(short, 0);
    const one = await file();
    assert.deepEqual([one.minLiveReplicas, one.underReplicatedParts, one.lostParts], [1, 1, 0]);
    // A fetch that meets the short copy reads the other and reports it: it is quarantined.
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    // (The first replica listed is the one tried first for part 0.)
    const fetched = await cluster.fts(["fetch", "t.bin", dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.match(fetched.stderr, /outside the part/);
    await assertSameFile(join(dest, "t.bin"), join(cluster.work, "src", "t.bin"));
    assert.equal(await _exists(short), false, "the short copy is still served");
    await Deno.truncate(storedPartPath(cluster.dir, part.replicas[1]!, part.digest), 100);
    const none = await file();
    // A lost part: the report, and exit 1 after it.
    assert.deepEqual([none.code, none.minLiveReplicas, none.lostParts], [1, 0, 1]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("scrub: an instance killed mid-check has its copies counted unchecked, in one line, not as if checked (R=2)", async () => {
  const cluster = await startCluster({
    servers: 2,
    replicas: 2,
    files: { "s.bin": 12 * MiB },
    clusterArgs: ["--heal-after", "0"],
  });
  try {
    // Slow enough (4 MiB/s for 24 MiB of copies) that the kill lands mid-check.
    const scrub = new FtsProcess(["scrub", "--hash-rate", "4MiB", "--data", cluster.dir]);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const victim = cluster.ports[1]!;
    await cluster.kill(victim);
    const result = await scrub.result();
    const said = result.stdout + result.stderr;
    assert.equal(result.code, 1, said);
    const lines = said.split("\n").filter((line) => line.includes("stopped answering mid-check"));
    assert.equal(lines.length, 1, said);
    assert.match(
      lines[0]!,
      new RegExp(`^unchecked: the copy of .* on ${victim} could not be re-hashed`),
    );
  } finally {
    await cluster.stop();
  }
});
