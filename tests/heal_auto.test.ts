import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSameFile,
  damageFile,
  FtsProcess,
  readManifestJson,
  startCluster,
  storedPartPath,
} from "./harness.ts";
import { censusOnDisk, offCount, settledCopies, waitUntil } from "./replicas.ts";

const MiB = 1024 * 1024;
/** Generous bound for healing on a loaded 2-core machine; the heal itself takes ~2 s here. */
const HEAL_DEADLINE_MS = 60_000;

Deno.test("cluster --heal-after 2s: a killed instance's parts get back to R copies with no command; when it returns, surplus copies are dropped (R=3)", async () => {
  const cluster = await startCluster({
    servers: 6,
    replicas: 3,
    files: { "h.bin": 2 * MiB + 5, "i.bin": MiB },
    clusterArgs: ["--heal-after", "2s"],
  });
  try {
    // A holder of part 0, from the manifest: which ports hold what follows the port range.
    const manifest = await readManifestJson(cluster.dir);
    const victim = Number(manifest.files["h.bin"]!.parts[0]!.replicas[0]);
    const others = cluster.ports.filter((port) => port !== victim);
    const held = (await censusOnDisk(cluster.dir, [victim])).filter((p) => p.good.length > 0);
    assert.ok(held.length > 0, `instance ${victim} holds no part, so there is nothing to heal`);
    await cluster.kill(victim);

    // No command: the supervisor notices, waits out --heal-after and copies.
    await waitUntil(
      async () => {
        const off = offCount(await censusOnDisk(cluster.dir, others), 3);
        return off.length === 0 || off.join("; ");
      },
      HEAL_DEADLINE_MS,
      "every part to have 3 good copies on the live instances",
    );
    await waitUntil(
      async () => {
        const census = await censusOnDisk(cluster.dir, others);
        const unlisted = census.filter((p) => p.listed.join() !== p.good.join());
        return unlisted.length === 0 || `${unlisted.length} parts not recorded yet`;
      },
      HEAL_DEADLINE_MS,
      "the manifest to list the new copies",
    );
    await cluster.supervisor.waitFor(/heal: instance \d+ down for 2\.0 s/);
    const status = await cluster.fts(["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /healing: on, after 2\.0 s/);
    assert.match(status.stdout, new RegExp(`${victim} down since .*: its parts were copied`));

    // Back with its old copies: every part must end with exactly R, on the best-ranked instances.
    await cluster.start(victim);
    await waitUntil(
      () => settledCopies(cluster.dir, cluster.ports, 3),
      HEAL_DEADLINE_MS,
      "every part to have exactly 3 copies again",
    );
    await cluster.supervisor.waitFor(/heal: instance \d+ back/);
    // The returned instance keeps the copies it had: they are the placement's first choice.
    const after = await censusOnDisk(cluster.dir, [victim]);
    for (const part of held) {
      assert.ok(
        after.find((p) => p.digest === part.digest)!.good.includes(String(victim)),
        `part ${part.index} of ${part.file} left ${victim}`,
      );
    }

    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    for (const name of ["h.bin", "i.bin"]) {
      const fetch = await cluster.fts(["fetch", name, dest]);
      assert.equal(fetch.code, 0, fetch.stderr);
      await assertSameFile(join(dest, name), join(cluster.work, "src", name));
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("cluster --heal-after 2s: an instance that lives but stops answering (SIGSTOP) is healed around; when it answers again, surplus copies go (R=2)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "h.bin": 2 * MiB + 5 },
    clusterArgs: ["--heal-after", "2s"],
  });
  const manifest = await readManifestJson(cluster.dir);
  const victim = Number(manifest.files["h.bin"]!.parts[0]!.replicas[0]);
  const pid = Number((await Deno.readTextFile(join(cluster.dir, "run", `${victim}.pid`))).trim());
  const others = cluster.ports.filter((port) => port !== victim);
  try {
    // Its process lives on: no exit tells the supervisor; only its silence does.
    Deno.kill(pid, "SIGSTOP");
    await cluster.supervisor.waitFor(
      new RegExp(`instance ${victim} does not answer`),
      HEAL_DEADLINE_MS,
    );
    await waitUntil(
      () => settledCopies(cluster.dir, others, 2),
      HEAL_DEADLINE_MS,
      "every part to have 2 good copies on the answering instances, listed",
    );
    Deno.kill(pid, "SIGCONT");
    await cluster.supervisor.waitFor(new RegExp(`instance ${victim} answers again`));
    await waitUntil(
      () => settledCopies(cluster.dir, cluster.ports, 2),
      HEAL_DEADLINE_MS,
      "every part to have exactly 2 copies again",
    );
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetch = await cluster.fts(["fetch", "h.bin", dest]);
    assert.equal(fetch.code, 0, fetch.stderr);
    await assertSameFile(join(dest, "h.bin"), join(cluster.work, "src", "h.bin"));
  } finally {
    try {
      Deno.kill(pid, "SIGCONT");
    } catch { /* gone */ }
    await cluster.stop();
  }
});

Deno.test("cluster --heal-after 2s: status does not say the parts of instances holding a lost part were copied (R=2)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "l.bin": 100_000 },
    clusterArgs: ["--heal-after", "2s"],
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    const holders = manifest.files["l.bin"]!.parts[0]!.replicas.map(Number);
    for (const port of holders) await cluster.kill(port);
    await cluster.supervisor.waitFor(/heal: 1 part LOST/, HEAL_DEADLINE_MS);
    const status = await cluster.fts(["status"]);
    assert.equal(status.code, 1, "a part is lost: " + status.stderr);
    for (const port of holders) {
      assert.match(
        status.stdout,
        new RegExp(`${port} down since .*: healing could not copy all its parts`),
      );
    }
    assert.doesNotMatch(status.stdout, /were copied elsewhere/);
  } finally {
    await cluster.stop();
  }
});

Deno.test("cluster --heal-after 2s: a copy a fetch got quarantined is made again; a restarted cluster drops the surplus an earlier one left (R=2)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    files: { "q.bin": 100_000, "r.bin": 700_000 },
    clusterArgs: ["--heal-after", "2s"],
  });
  let again: FtsProcess | undefined;
  try {
    // A corrupt copy, met by a fetch: reported, quarantined, and copied anew with no command.
    const part = (await readManifestJson(cluster.dir)).files["q.bin"]!.parts[0]!;
    await damageFile(storedPartPath(cluster.dir, part.replicas[0]!, part.digest), 10, 4);
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetched = await cluster.fts(["fetch", "q.bin", dest]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await cluster.supervisor.waitFor(/heal: instance \d+ quarantined a bad copy/, HEAL_DEADLINE_MS);
    await waitUntil(
      () => settledCopies(cluster.dir, cluster.ports, 2),
      HEAL_DEADLINE_MS,
      "every part to have 2 good copies again",
    );

    // Healing copies a killed instance's parts elsewhere; that supervisor stops before the
    // instance is back, and the next one, started with it up, drops the surplus copies.
    const victim = Number(part.replicas[1]);
    const others = cluster.ports.filter((port) => port !== victim);
    await cluster.kill(victim);
    await waitUntil(
      () => settledCopies(cluster.dir, others, 2),
      HEAL_DEADLINE_MS,
      "every part to have 2 good copies on the live instances",
    );
    cluster.supervisor.kill("SIGTERM");
    assert.equal((await cluster.supervisor.status).code, 0);
    again = new FtsProcess(["cluster", "--data", cluster.dir, "--heal-after", "2s", "--plain"]);
    await again.waitFor(/heal: cluster up for 2\.0 s/, HEAL_DEADLINE_MS);
    await waitUntil(
      () => settledCopies(cluster.dir, cluster.ports, 2),
      HEAL_DEADLINE_MS,
      "every part to have exactly 2 copies again",
    );
  } finally {
    again?.kill("SIGTERM");
    await again?.status;
    await cluster.stop();
  }
});

Deno.test("cluster --heal-after 2s: copies lost without a long outage come back: a store wiped while down a moment, a copy file deleted and found by a fetch (R=2)", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    files: { "w.bin": 3 * MiB + 7 },
    partSize: "1MiB",
    clusterArgs: ["--heal-after", "2s"],
  });
  try {
    const manifest = await readManifestJson(cluster.dir);
    const parts = manifest.files["w.bin"]!.parts;
    // The run every cluster makes once up for --heal-after is over: what follows is not it.
    await waitUntil(
      async () => {
        const status = JSON.parse((await cluster.fts(["status", "--json"])).stdout);
        return status.healing?.last != null || "no run over yet";
      },
      HEAL_DEADLINE_MS,
      "the first healing run to end",
    );
    // Down a moment (well inside --heal-after), its copies wiped meanwhile, then back.
    const victim = Number(parts[0]!.replicas[0]);
    await cluster.kill(victim);
    await Deno.remove(join(cluster.dir, "instances", String(victim), "parts"), { recursive: true });
    await cluster.start(victim);
    const twoGoodCopies = (what: string) =>
      waitUntil(
        async () => {
          const off = offCount(await censusOnDisk(cluster.dir, cluster.ports), 2);
          return off.length === 0 || off.join("; ");
        },
        HEAL_DEADLINE_MS,
        what,
      );
    await twoGoodCopies(
      "every part to have 2 good copies again after the instance came back empty",
    );
    await cluster.supervisor.waitFor(new RegExp(`heal: instance ${victim} back`));

    // One copy file deleted under a running instance: nothing goes down; a fetch finds it gone.
    // Part 1 is read from its second replica first (one read at a time: nothing else counts).
    const part = parts[1]!;
    const holder = part.replicas[1]!;
    await Deno.remove(storedPartPath(cluster.dir, holder, part.digest));
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetch = await cluster.fts(["fetch", "w.bin", dest, "--parallel", "1"]);
    assert.match(fetch.stderr, new RegExp(`failover: part 1 from instance ${holder}`));
    assert.equal(fetch.code, 0, fetch.stderr);
    await assertSameFile(join(dest, "w.bin"), join(cluster.work, "src", "w.bin"));
    await twoGoodCopies("the deleted copy to be made again");
    await cluster.supervisor.waitFor(/heal: a client found a listed copy missing on instance \d+/);
  } finally {
    await cluster.stop();
  }
});
