/**
 * A cluster on three test hosts (network namespaces on a bridge, see
 * bench/test_hosts.ts) with its state in a real etcd on a fourth host, where
 * the client runs too. Every process runs inside a host; the test process
 * only reads files. Checks failure domains (every part on R distinct hosts),
 * a whole host SIGKILLed mid-fetch, a host cut off mid-fetch, and uploads
 * from every host at once losing nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";
import { cutUnsupported, TestHosts } from "../bench/test_hosts.ts";
import { type FtsProcess } from "../bench/fts_process.ts";
import { etcdClusterArgs } from "../bench/etcd_cluster_args.ts";

const SERVER_HOSTS = 3;
const CLIENT = SERVER_HOSTS;
const SERVERS_PER_HOST = 2;
const REPLICAS = 3;
const PART_SIZE = 64 * 1024;
const FILE_BYTES = 3 * 1024 * 1024;

async function _randomFile(path: string, bytes: number): Promise<void> {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  await Deno.writeFile(path, data);
}

async function _sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

/** Three server hosts running `fts cluster --etcd`, etcd and the client on the fourth. */
async function _withCluster(
  options: { replicas?: number; extra?: string[]; partSize?: number },
  fn: (ctx: {
    net: TestHosts;
    etcd: EtcdProcess;
    dir: string;
    flags: string[];
    clusters: FtsProcess[];
  }) => Promise<void>,
): Promise<void> {
  const net = await TestHosts.create(SERVER_HOSTS + 1);
  const dir = await Deno.makeTempDir({ prefix: "fts-etcd-hosts-" });
  try {
    const etcd = await EtcdProcess.start({ net, hosts: [CLIENT] });
    try {
      const flags = ["--etcd", etcd.endpoints, "--cluster", "hosts"];
      const basePort = net.portRange(SERVERS_PER_HOST);
      const clusters: FtsProcess[] = [];
      for (let h = 0; h < SERVER_HOSTS; h++) {
        const cluster = net.spawnFts(
          h,
          etcdClusterArgs({
            flags,
            host: net.hosts[h]!.address,
            servers: SERVERS_PER_HOST,
            basePort,
            replicas: options.replicas ?? REPLICAS,
            extra: [...(options.extra ?? []), "--part-size", String(options.partSize ?? PART_SIZE)],
            data: join(dir, `host${h}`),
          }),
        );
        clusters.push(cluster);
        // One at a time: the first records the settings the others then agree with.
        await cluster.waitFor(/ready/);
      }
      await fn({ net, etcd, dir, flags, clusters });
    } finally {
      await etcd.stop();
    }
  } finally {
    await net.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "etcd hosts: every part on R distinct hosts; a host SIGKILLed mid-fetch, another cut off (H=3, R=3)",
  ignore: missingTool("etcd") || missingTool("ip") || cutUnsupported(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withCluster({}, async ({ net, dir, flags }) => {
      const source = join(dir, "movie.bin");
      await _randomFile(source, FILE_BYTES);
      const identity = join(dir, "me.id");
      const up = await net.fts(CLIENT, ["upload", source, ...flags, "--identity", identity]);
      assert.equal(up.code, 0, up.stderr);

      // Failure domains: each part's copies are on R distinct hosts, and every host holds some.
      const ls = await net.fts(CLIENT, ["ls", "movie.bin", "--json", ...flags]);
      assert.equal(ls.code, 0, ls.stderr);
      const entry = JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] };
      assert.equal(entry.parts.length, FILE_BYTES / PART_SIZE);
      const perInstance = new Map<string, number>();
      for (const part of entry.parts) {
        assert.equal(part.replicas.length, REPLICAS);
        const hosts = new Set(part.replicas.map((id) => id.slice(0, id.lastIndexOf(":"))));
        assert.equal(hosts.size, REPLICAS, `part on ${part.replicas.join(", ")}`);
        for (const id of part.replicas) perInstance.set(id, (perInstance.get(id) ?? 0) + 1);
      }
      // Even: both instances of every host hold copies.
      assert.equal(perInstance.size, SERVER_HOSTS * SERVERS_PER_HOST);

      // A fetch slowed to 1 MiB/s (3 s), and a fault 0.8 s into it.
      const fetchWith = async (out: string, fault: () => Promise<unknown> | unknown) => {
        await Deno.mkdir(out);
        const args = ["fetch", "movie.bin", out, ...flags, "--limit-rate", "1MiB"];
        const fetching = net.spawnFts(CLIENT, [...args, "--timeout", "3s", "-q"]);
        await new Promise((resolve) => setTimeout(resolve, 800));
        await fault();
        const fetched = await fetching.result();
        assert.equal(fetched.code, 0, fetched.stderr);
        assert.ok(await _sameBytes(source, join(out, "movie.bin")));
      };
      // A whole host dies mid-fetch: the fetch ends byte-identical from the others.
      await fetchWith(join(dir, "out1"), async () => assert.ok((await net.killHost(0)) > 0));
      // A host cut off from the network mid-fetch: the same, within the fetch's timeout.
      const started = Date.now();
      await fetchWith(join(dir, "out2"), () => net.cutHost(1));
      assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
      net.restoreHost(1);
    });
  },
});

Deno.test({
  name: "etcd hosts: uploads from three hosts at once and a rename racing a delete lose nothing",
  ignore: missingTool("etcd") || missingTool("ip"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withCluster({}, async ({ net, dir, flags }) => {
      const identity = join(dir, "me.id");
      // Made once, so that the three uploads below do not race to create it.
      await net.fts(CLIENT, ["whoami", "--identity", identity]);
      const uploads = [];
      for (let h = 0; h < SERVER_HOSTS; h++) {
        for (let k = 0; k < 3; k++) {
          const path = join(dir, `f${h}-${k}.bin`);
          await _randomFile(path, 200_000 + h * 1000 + k);
          uploads.push(net.fts(h, ["upload", path, ...flags, "--identity", identity]));
        }
      }
      for (const result of await Promise.all(uploads)) assert.equal(result.code, 0, result.stderr);
      const [renamed, removed] = await Promise.all([
        net.fts(0, ["mv", "f0-0.bin", "moved.bin", ...flags, "--identity", identity]),
        net.fts(1, ["rm", "f0-0.bin", ...flags, "--identity", identity]),
      ]);
      // Exactly one of the two wins; the other finds the name gone.
      assert.equal([renamed.code, removed.code].filter((code) => code === 0).length, 1);
      const ls = await net.fts(CLIENT, ["ls", "--json", ...flags]);
      assert.equal(ls.code, 0, ls.stderr);
      const names = (JSON.parse(ls.stdout) as { name: string }[]).map((f) => f.name).sort();
      const expected = [];
      for (let h = 0; h < SERVER_HOSTS; h++) {
        for (let k = 0; k < 3; k++) if (h !== 0 || k !== 0) expected.push(`f${h}-${k}.bin`);
      }
      if (renamed.code === 0) expected.push("moved.bin");
      assert.deepEqual(names, expected.sort());
      // Every file left is whole: fetch each from the client host and compare.
      const out = join(dir, "out");
      await Deno.mkdir(out);
      for (const name of names) {
        const got = await net.fts(CLIENT, ["fetch", name, out, ...flags, "-q"]);
        assert.equal(got.code, 0, got.stderr);
        const original = name === "moved.bin" ? "f0-0.bin" : name;
        assert.ok(await _sameBytes(join(dir, original), join(out, name)), name);
      }
    });
  },
});

Deno.test({
  name: "etcd hosts: a host down past --heal-after has its parts copied to the other hosts (R=2)",
  ignore: missingTool("etcd") || missingTool("ip"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withCluster({ replicas: 2, extra: ["--heal-after", "2s"] }, async (ctx) => {
      const { net, dir, flags, clusters } = ctx;
      const source = join(dir, "movie.bin");
      await _randomFile(source, FILE_BYTES / 2);
      const up = await net.fts(CLIENT, ["upload", source, ...flags, "--identity", join(dir, "id")]);
      assert.equal(up.code, 0, up.stderr);
      const gone = net.hosts[0]!.address;
      await net.killHost(0);
      // Healing: every part back to 2 copies, none on the dead host, on 2 distinct hosts.
      const deadline = Date.now() + 60_000;
      let parts: { replicas: string[] }[] = [];
      while (Date.now() < deadline) {
        const ls = await net.fts(CLIENT, ["ls", "movie.bin", "--json", ...flags]);
        assert.equal(ls.code, 0, ls.stderr);
        parts = (JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] }).parts;
        const healed = parts.every((part) =>
          part.replicas.length === 2 &&
          part.replicas.every((id) => !id.startsWith(`${gone}:`)) &&
          new Set(part.replicas.map((id) => id.slice(0, id.lastIndexOf(":")))).size === 2
        );
        if (healed) break;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      assert.ok(
        parts.every((part) => part.replicas.every((id) => !id.startsWith(`${gone}:`))),
        JSON.stringify(parts.map((p) => p.replicas)),
      );
      const status = await net.fts(CLIENT, ["status", ...flags]);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /instances: 4\/6 up; down: /);
      assert.match(status.stdout, /movie\.bin .* min live replicas 2\/2/);
      // Asked from a client with no data directory: healing is the hosts' own.
      assert.match(status.stdout, /healing: heal@\S+ \(pid \d+\), elected, heals for the cluster/);
      const said = clusters.slice(1).map((c) => c.stdout).join("\n");
      assert.match(said, /heal: .*copies made/);
      // One host heals for the cluster (the first was elected, and died): one of the others
      // took over and ran (at once if the instances were due by then, else when they were);
      // the third ran nothing for the same event.
      const ran = clusters.slice(1).filter((c) => /heal: .*checking every part/.test(c.stdout));
      assert.equal(ran.length, 1, said);
      assert.match(ran[0]!.stdout, /heal: (this host heals now|instance \S+ down for)/);
      // Each host's status says which it is.
      const leads = [];
      for (const h of [1, 2]) {
        const host = await net.fts(h, ["status", "--data", join(dir, `host${h}`), ...flags]);
        assert.equal(host.code, 0, host.stderr);
        assert.match(host.stdout, /healing: on, .*; (this|another) host heals for the cluster/);
        leads.push(/this host heals for the cluster/.test(host.stdout) ? clusters[h] : undefined);
      }
      assert.deepEqual(leads.filter(Boolean), ran);
      // And the file still comes back whole from the two hosts left.
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await net.fts(CLIENT, ["fetch", "movie.bin", out, ...flags, "-q"]);
      assert.equal(got.code, 0, got.stderr);
      assert.ok(await _sameBytes(source, join(out, "movie.bin")));
    });
  },
});

Deno.test({
  name: "etcd hosts: each host's gateway serves every file and its Metalink lists all three",
  ignore: missingTool("etcd") || missingTool("ip") || missingTool("curl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await _withCluster({ extra: ["--http", "8080"] }, async ({ net, dir, flags }) => {
      const source = join(dir, "movie.bin");
      await _randomFile(source, FILE_BYTES / 3);
      const up = await net.fts(CLIENT, ["upload", source, ...flags, "--identity", join(dir, "id")]);
      assert.equal(up.code, 0, up.stderr);
      const gateways = net.hosts.slice(0, SERVER_HOSTS).map((h) => `http://${h.address}:8080`);
      // From the client host: a download through the second host's gateway.
      const out = join(dir, "curl.bin");
      const got = await net.run(CLIENT, "curl", [
        "-sSf",
        "-o",
        out,
        `${gateways[1]}/files/movie.bin`,
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.ok(await _sameBytes(source, out));
      // Each gateway announced itself in etcd: the Metalink of any one names them all.
      const meta = await net.run(CLIENT, "curl", ["-sSf", `${gateways[0]}/files/movie.bin.meta4`]);
      assert.equal(meta.code, 0, meta.stderr);
      for (const url of gateways) assert.ok(meta.stdout.includes(`${url}/files/movie.bin`), url);
    });
  },
});

Deno.test({
  name: "etcd hosts: the healing host dies mid-heal; another host's supervisor takes over (R=3)",
  ignore: missingTool("etcd") || missingTool("ip"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const partSize = 16 * 1024;
    const options = {
      partSize,
      // Slow copies (two parts a second), so the healer is still at it when it dies.
      extra: ["--heal-after", "1s", "--heal-rate", "32KiB"],
    };
    await _withCluster(options, async ({ net, etcd, dir, flags, clusters }) => {
      const source = join(dir, "movie.bin");
      await _randomFile(source, 24 * partSize);
      const up = await net.fts(CLIENT, ["upload", source, ...flags, "--identity", join(dir, "id")]);
      assert.equal(up.code, 0, up.stderr);
      await net.killHost(0);
      // The repair lock names its holder: the host that heals now. Host 0 may have held it
      // for a run of its own as it died (a host joining starts one): its lease lapses first.
      const lockKey = "/fts/hosts/locks/repair";
      const deadline = Date.now() + 30_000;
      const dead = `@${net.hosts[0]!.address} `;
      let holder: string | undefined;
      while ((holder === undefined || holder.includes(dead)) && Date.now() < deadline) {
        holder = await etcd.get(lockKey);
        if (holder === undefined || holder.includes(dead)) {
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      assert.ok(holder, "no host took the repair lock");
      const healer = net.hosts.findIndex((h) => holder!.includes(`@${h.address} `));
      assert.ok(healer === 1 || healer === 2, holder);
      const survivor = 3 - healer;
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await net.killHost(healer);
      // The survivor takes the lock once the dead healer's lease lapses, and
      // gives every part a second copy on its own two instances.
      const mine = `${net.hosts[survivor]!.address}:`;
      let parts: { replicas: string[] }[] = [];
      const until = Date.now() + 90_000;
      while (Date.now() < until) {
        const ls = await net.fts(CLIENT, ["ls", "movie.bin", "--json", ...flags]);
        parts = (JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] }).parts;
        if (parts.every((p) => p.replicas.filter((id) => id.startsWith(mine)).length === 2)) break;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      assert.ok(
        parts.every((p) => p.replicas.filter((id) => id.startsWith(mine)).length === 2),
        JSON.stringify(parts.map((p) => p.replicas)),
      );
      assert.match(clusters[survivor]!.stdout, /heal: .*copies made/);
      const out = join(dir, "out");
      await Deno.mkdir(out);
      const got = await net.fts(CLIENT, ["fetch", "movie.bin", out, ...flags, "-q"]);
      assert.equal(got.code, 0, got.stderr);
      assert.ok(await _sameBytes(source, join(out, "movie.bin")));
    });
  },
});
