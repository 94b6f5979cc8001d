/**
 * Failure domains kept by repair: a cluster in etcd that had one host, whose
 * every part has its R copies there, gains a second host; a repair moves one
 * copy of each part to the new host (a copy made there, the surplus one on
 * the first host unlisted, and deleted by that host when told through etcd),
 * so that losing either host loses nothing. With healing on, the host
 * joining starts that repair by itself.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { type FtsProcess, runFts } from "./harness.ts";
import { etcdTest, startLoopbackHost } from "./etcd_host.ts";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { storedPartNames, waitUntil } from "./replicas.ts";

interface _Spread {
  dir: string;
  flags: string[];
  hosts: FtsProcess[];
  bytes: Uint8Array;
  /** Starts host `i` (127.0.0.{i+2}, 2 instances). */
  start(i: number): Promise<void>;
  /** The hosts of each part's replicas of f.bin, sorted. */
  replicaHosts(): Promise<string[][]>;
}

/** One host holding f.bin (5 parts, both copies of each there), given to `fn`. */
async function _withOneHostFile(
  healAfter: string,
  fn: (ctx: _Spread) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fts-etcd-spread-" });
  const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
  const hosts: FtsProcess[] = [];
  const flags = ["--etcd", etcd.endpoints, "--cluster", "spread"];
  const ctx: _Spread = {
    dir,
    flags,
    hosts,
    bytes: new Uint8Array(300_000),
    start: async (i) => {
      const extra = ["--part-size", "64KiB", "--heal-after", healAfter];
      hosts.push(await startLoopbackHost(i, { flags, dir, extra }));
    },
    replicaHosts: async () => {
      const ls = await runFts(["ls", "f.bin", "--json", ...flags]);
      assert.equal(ls.code, 0, ls.stderr);
      return (JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] }).parts.map((p) =>
        p.replicas.map((id) => id.slice(0, id.lastIndexOf(":"))).sort()
      );
    },
  };
  try {
    await ctx.start(0);
    const source = join(dir, "f.bin");
    for (let at = 0; at < ctx.bytes.length; at += 65536) {
      crypto.getRandomValues(ctx.bytes.subarray(at, at + 65536));
    }
    await Deno.writeFile(source, ctx.bytes);
    const up = await runFts(["upload", source, ...flags, "--identity", join(dir, "id"), "-q"]);
    assert.equal(up.code, 0, up.stderr);
    const before = await ctx.replicaHosts();
    assert.equal(before.length, 5);
    for (const hostsOfPart of before) assert.deepEqual(hostsOfPart, ["127.0.0.2", "127.0.0.2"]);
    await fn(ctx);
  } finally {
    for (const host of hosts) {
      host.kill("SIGTERM");
      await host.status;
    }
    await etcd.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "etcd spread: a host joins a one-host cluster; a repair puts a copy of every part on it",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withOneHostFile("0", async ({ dir, flags, hosts, bytes, start, replicaHosts }) => {
      await start(1);
      // From a client with no data directory: copies made, the surplus ones on the first host
      // unlisted (it cannot delete them), and deleted there by that host once told through etcd.
      assert.equal((await storedPartNames(join(dir, "host0", "instances"))).length, 10);
      const client = await runFts(["repair", ...flags], { env: { FTS_DATA: join(dir, "none") } });
      assert.equal(client.code, 0, client.stderr + client.stdout);
      assert.match(client.stdout, /5 copies made/);
      assert.doesNotMatch(client.stdout, /surplus copies dropped|^dropped/m);
      assert.equal(
        client.stdout.match(/^unlisted surplus copy .*: its host deletes it$/gm)?.length,
        5,
      );
      for (const hostsOfPart of await replicaHosts()) {
        assert.deepEqual(hostsOfPart, ["127.0.0.2", "127.0.0.3"]);
      }
      await waitUntil(
        async () => {
          const held = (await storedPartNames(join(dir, "host0", "instances"))).length;
          return held === 5 || `the first host holds ${held} copies`;
        },
        15_000,
        "the first host to delete its unlisted copies",
      );
      // A repair there then finds nothing to do.
      const repair = await runFts(["repair", ...flags, "--data", join(dir, "host0")]);
      assert.equal(repair.code, 0, repair.stderr + repair.stdout);
      assert.match(repair.stdout, /nothing to do/);
      // The first host dies, instances and all: the file is still whole, from the second.
      hosts[0]!.kill("SIGKILL");
      await hosts[0]!.status;
      for (const entry of Deno.readDirSync(join(dir, "host0", "run"))) {
        if (!entry.name.endsWith(".pid")) continue;
        try {
          Deno.kill(
            Number(Deno.readTextFileSync(join(dir, "host0", "run", entry.name))),
            "SIGKILL",
          );
        } catch { /* gone with its supervisor */ }
      }
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await runFts(["fetch", "f.bin", out, ...flags, "-q", "--timeout", "2s"]);
      assert.equal(got.code, 0, got.stderr);
      assert.deepEqual(await Deno.readFile(join(out, "f.bin")), bytes);
      // Removed through an instance of the second host: its copies go from both its instances.
      const id = ["--identity", join(dir, "id")];
      const removed = await runFts(["rm", "f.bin", ...flags, ...id]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.match(
        removed.stdout,
        /5 parts no other file uses were freed \(5 stored copies on the host/,
      );
      assert.deepEqual(await storedPartNames(join(dir, "host1", "instances")), []);
    });
  },
});

Deno.test({
  name: "etcd spread: with healing on, a host joining starts the repair that spreads the copies",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Healing on, but no instance goes down: only the join can start a heal.
    await _withOneHostFile("1h", async ({ hosts, start, replicaHosts }) => {
      await start(1);
      const deadline = Date.now() + 30_000;
      let spread: string[][] = [];
      while (Date.now() < deadline) {
        spread = await replicaHosts();
        if (spread.every((h) => h.join() === "127.0.0.2,127.0.0.3")) break;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      for (const hostsOfPart of spread) assert.deepEqual(hostsOfPart, ["127.0.0.2", "127.0.0.3"]);
      assert.match(
        hosts.map((h) => h.stdout).join("\n"),
        /heal: instance 127\.0\.0\.[23]:\d+ joined/,
      );
    });
  },
});

etcdTest(
  "etcd spread: a first host with fewer instances than R says that uploads fail until more join",
  "fts-etcd-few-",
  async (dir, etcd, hosts) => {
    const flags = ["--etcd", etcd.endpoints, "--cluster", "few"];
    hosts.push(await startLoopbackHost(0, { flags, dir, extra: [], servers: 1 }));
    await hosts[0]!.waitFor(/the cluster has 1 instance, fewer than the 2 copies each part needs/);
  },
);

Deno.test({
  name: "etcd spread: a copy a fetch got quarantined is made again by healing, with no host down",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withOneHostFile("2s", async ({ dir, flags, bytes, hosts }) => {
      // The runs the start set off (a member registering after the first look) are over.
      await _healingSettled(hosts);
      // Part 0 is read from its first replica first, one read at a time.
      const ls = await runFts(["ls", "f.bin", "--json", ...flags]);
      const part = (JSON.parse(ls.stdout) as { parts: { digest: string; replicas: string[] }[] })
        .parts[0]!;
      const port = part.replicas[0]!.slice(part.replicas[0]!.lastIndexOf(":") + 1);
      const path = join(
        dir,
        "host0",
        "instances",
        port,
        "parts",
        part.digest.slice(0, 2),
        part.digest,
      );
      const file = await Deno.open(path, { read: true, write: true });
      await file.write(new Uint8Array([0xde, 0xad]));
      file.close();
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await runFts(["fetch", "f.bin", out, ...flags, "--parallel", "1"]);
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stderr, /digest mismatch/);
      assert.deepEqual(await Deno.readFile(join(out, "f.bin")), bytes);
      // Two good copies again on the host's instances: healing made a new one.
      const goodCopies = async () => {
        let good = 0;
        for await (const instance of Deno.readDir(join(dir, "host0", "instances"))) {
          const copy = join(
            dir,
            "host0",
            "instances",
            instance.name,
            "parts",
            part.digest.slice(0, 2),
            part.digest,
          );
          const held = await Deno.readFile(copy).catch(() => undefined);
          if (held && (await sha256Hex(held)) === part.digest) good++;
        }
        return good;
      };
      await waitUntil(
        async () => (await goodCopies()) === 2 || `${await goodCopies()} good copies`,
        60_000,
        "healing to make the quarantined copy again",
      );
      await hosts[0]!.waitFor(/quarantined a bad copy: checking every part's copies/);
    });
  },
});

/** Waits until no host has a healing run going, and none started for 1.5 s. */
async function _healingSettled(hosts: FtsProcess[]): Promise<void> {
  const runs = (text: string) => [
    text.match(/checking every part's copies/g)?.length ?? 0,
    text.match(/instances up, [\d.]+ m?s\)/g)?.length ?? 0,
  ];
  for (let seen = "";;) {
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const said = hosts.map((host) => host.stdout).join("\n");
    const [started, ended] = runs(said);
    if (said === seen && started === ended) return;
    seen = said;
  }
}

Deno.test({
  name:
    "etcd spread: an instance that cannot read its part store leaves the live set; its copies are made elsewhere",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withOneHostFile("2s", async ({ dir, flags, start, replicaHosts, hosts }) => {
      await start(1);
      const replicas = async () => {
        const ls = await runFts(["ls", "f.bin", "--json", ...flags]);
        return (JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] }).parts.map((p) =>
          p.replicas
        );
      };
      // The second host joined: healing spreads one copy of every part onto it.
      await waitUntil(
        async () =>
          (await replicaHosts()).every((h) => h.join() === "127.0.0.2,127.0.0.3") ||
          "not spread yet",
        60_000,
        "a copy of every part on each host",
      );
      await _healingSettled(hosts);
      // One of the second host's instances that holds copies loses its part store.
      const victim = (await replicas()).flat().find((id) => id.startsWith("127.0.0.3:"))!;
      const parts = join(dir, "host1", "instances", victim.slice(victim.lastIndexOf(":") + 1));
      await Deno.rename(join(parts, "parts"), join(parts, "parts.gone"));
      await waitUntil(
        async () => {
          const now = await replicas();
          const spread = (await replicaHosts()).every((h) => h.join() === "127.0.0.2,127.0.0.3");
          return (spread && !now.flat().includes(victim)) ||
            `${JSON.stringify(now)}; the hosts said: ${hosts.map((h) => h.stdout.slice(-800))}`;
        },
        60_000,
        `copies listed on ${victim} to be made on another instance of its host`,
      );
    });
  },
});
