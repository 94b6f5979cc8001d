/**
 * `fts migrate` on real processes: a cluster preloaded on one host moves into
 * a real etcd on loopback, then `fts cluster --etcd` on the same data
 * directory serves every file byte-identical with no part sent again; and
 * each bad input is one clear line, an exit code of 1 or 2, nothing changed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { migratedEntry } from "../lib/ops/migrate.ts";
import { missingTool } from "./missing_tool.ts";
import {
  assertSameFile,
  freePortRange,
  FtsProcess,
  runFts,
  tempDir,
  writeRandomFile,
} from "./harness.ts";

const SERVERS = 4;
const REPLICAS = 2;
const PART_SIZE = "64KiB";
const FILES: Record<string, number> = {
  "small.bin": 10_000,
  "medium.bin": 300_000,
  "large.bin": 1_200_000,
};

/** Every file under `dir` with its size, sorted: what the instance stores hold. */
async function _listing(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string) => {
    for await (const item of Deno.readDir(path)) {
      const child = join(path, item.name);
      if (item.isDirectory) await walk(child);
      else found.push(`${child.slice(dir.length)} ${(await Deno.stat(child)).size}`);
    }
  };
  await walk(dir);
  return found.sort();
}

/** A data directory with FILES preloaded (sources in work/src); returns its flags. */
async function _preloaded(
  work: string,
  name: string,
  files: Record<string, number>,
): Promise<{ dir: string; basePort: number; shape: string[] }> {
  const dir = join(work, name);
  const src = join(work, "src");
  await Deno.mkdir(src, { recursive: true });
  const paths: string[] = [];
  let seed = 1;
  for (const [file, size] of Object.entries(files)) {
    paths.push(join(src, file));
    await writeRandomFile(join(src, file), size, seed++);
  }
  const basePort = freePortRange(SERVERS);
  const shape = ["--servers", String(SERVERS), "--base-port", String(basePort)];
  const preload = await runFts([
    "preload",
    ...paths,
    "--data",
    dir,
    ...shape,
    "--replicas",
    String(REPLICAS),
    "--part-size",
    PART_SIZE,
  ]);
  assert.equal(preload.code, 0, preload.stderr);
  return { dir, basePort, shape };
}

/** The config, the manifest and the stores: what a refused migrate must leave alone. */
async function _state(dir: string): Promise<string> {
  const read = (f: string) => Deno.readTextFile(join(dir, f)).catch(() => "(absent)");
  const stores = await _listing(join(dir, "instances"));
  return [await read("config.json"), await read("manifest.json"), ...stores]
    .join("\n");
}

function _oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
  return lines[0]!;
}

Deno.test({
  name:
    "migrate: 3 preloaded files (4 servers, R=2, 64 KiB parts, one in etcd chunks), one already in etcd from a crashed run, and a closed writers policy move to etcd; fts cluster --etcd on the same dir serves them, no part re-sent",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const work = await tempDir("fts-migrate-");
    let etcd: EtcdProcess | undefined;
    let cluster: FtsProcess | undefined;
    try {
      const { dir, basePort, shape } = await _preloaded(work, "data", FILES);
      const stored = await _listing(join(dir, "instances"));
      etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
      const target = ["--etcd", etcd.endpoints];
      // A run that crashed part way: one entry is in etcd already, as migrate writes it.
      const crashed = new EtcdCluster([etcd.endpoints], "fts");
      try {
        const { entry } = (await new FileManifestStore(dir).get("medium.bin"))!;
        const written = migratedEntry(entry, "127.0.0.1");
        await crashed.manifest.change([entry.name], () => ({ puts: [written], result: 0 }));
      } finally {
        crashed.close();
      }
      // A closed single-host cluster stays closed in etcd.
      const closed = await runFts(["writers", "closed", "--data", dir]);
      assert.equal(closed.code, 0, closed.stderr);
      const migrated = await runFts(["migrate", "--data", dir, ...target, "--host", "127.0.0.1"]);
      assert.equal(migrated.code, 0, migrated.stderr);
      assert.match(migrated.stdout, /moved 3 files.*\(1 were there from an earlier run\)/);
      const writers = await runFts(["writers", ...target]);
      assert.equal(writers.code, 0, writers.stderr);
      assert.match(writers.stdout, /^writers: closed/);
      const next = `fts cluster --etcd ${etcd.endpoints} --cluster fts --host 127.0.0.1 ` +
        `--servers ${SERVERS} --base-port ${basePort} --data ${dir}`;
      assert.ok(migrated.stdout.includes(next), migrated.stdout);
      // 19 parts: more than an entry keeps inline, so its part list went to a chunk.
      const header = JSON.parse((await etcd.get("/fts/fts/files/large.bin"))!);
      assert.equal(header.chunks?.length, 1, JSON.stringify(header).slice(0, 200));
      // Run again: nothing left to do, nothing changed.
      const again = await runFts(["migrate", "--data", dir, ...target, "--host", "127.0.0.1"]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /nothing left to move/);
      // Again, but to another host or cluster: refused, nothing changed.
      const config = await Deno.readTextFile(join(dir, "config.json"));
      for (
        const [flags, said] of [
          [[...target, "--host", "127.0.0.2"], /was migrated with --host 127\.0\.0\.1 before/],
          [
            ["--etcd", etcd.endpoints, "--cluster", "other", "--host", "127.0.0.1"],
            /lists none of its instances .*another --cluster/,
          ],
        ] as const
      ) {
        const elsewhere = await runFts(["migrate", "--data", dir, ...flags]);
        assert.equal(elsewhere.code, 2, elsewhere.stdout + elsewhere.stderr);
        assert.match(elsewhere.stderr, said);
      }
      assert.equal(await Deno.readTextFile(join(dir, "config.json")), config);
      assert.equal(await etcd.get("/fts/other/settings"), undefined);

      cluster = new FtsProcess([
        "cluster",
        ...target,
        "--host",
        "127.0.0.1",
        ...shape,
        "--data",
        dir,
        "--plain",
      ]);
      await cluster.waitFor(/fts cluster: ready/, 60_000);
      const ls = await runFts(["ls", "large.bin", "--json", ...target]);
      assert.equal(ls.code, 0, ls.stderr);
      const entry = JSON.parse(ls.stdout) as { parts: { replicas: string[] }[] };
      for (const part of entry.parts) {
        assert.equal(part.replicas.length, REPLICAS);
        for (const id of part.replicas) assert.match(id, /^127\.0\.0\.1:\d+$/);
      }
      const dest = join(work, "dest");
      await Deno.mkdir(dest);
      for (const name of Object.keys(FILES)) {
        const got = await runFts(["fetch", name, dest, ...target, "-q"]);
        assert.equal(got.code, 0, got.stderr);
        await assertSameFile(join(dest, name), join(work, "src", name));
      }
      // Every part where preload put it; none sent again.
      assert.deepEqual(await _listing(join(dir, "instances")), stored);
    } finally {
      if (cluster) {
        cluster.kill("SIGTERM");
        await cluster.status;
      }
      await etcd?.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "migrate: no cluster in DIR, --host not local, etcd unreachable, cluster running, etcd holding files: one line, exit 1 or 2, nothing changed; --merge adds",
  ignore: missingTool("etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const work = await tempDir("fts-migrate-bad-");
    let etcd: EtcdProcess | undefined;
    let running: FtsProcess | undefined;
    try {
      const { dir, shape } = await _preloaded(work, "data", { "a.bin": 100_000 });
      const before = await _state(dir);
      etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
      const host = ["--host", "127.0.0.1"];

      const empty = join(work, "empty");
      await Deno.mkdir(empty);
      const none = await runFts(["migrate", "--data", empty, "--etcd", etcd.endpoints, ...host]);
      assert.equal(none.code, 2, none.stderr);
      assert.match(_oneLine(none.stderr), /No cluster in .*empty/);

      // TEST-NET-1 (RFC 5737): no machine here has it, and nothing is sent to it.
      const foreign = await runFts([
        "migrate",
        "--data",
        dir,
        "--etcd",
        etcd.endpoints,
        "--host",
        "192.0.2.1",
      ]);
      assert.equal(foreign.code, 2, foreign.stderr);
      assert.match(
        _oneLine(foreign.stderr),
        /--host 192\.0\.2\.1 is not an address of this machine/,
      );
      assert.equal(await _state(dir), before);

      const deadPort = freePortRange(1);
      const unreachable = await runFts([
        "migrate",
        "--data",
        dir,
        "--etcd",
        `http://127.0.0.1:${deadPort}`,
        ...host,
      ]);
      assert.equal(unreachable.code, 1, unreachable.stderr);
      assert.match(_oneLine(unreachable.stderr), /etcd is unavailable/);
      assert.equal(await _state(dir), before);

      running = new FtsProcess(["cluster", "--data", dir, ...shape, "--plain"]);
      await running.waitFor(/fts cluster: ready/, 60_000);
      const busy = await runFts(["migrate", "--data", dir, "--etcd", etcd.endpoints, ...host]);
      assert.equal(busy.code, 1, busy.stderr);
      assert.match(_oneLine(busy.stderr), /is running .*stop it first/);
      running.kill("SIGTERM");
      await running.status;
      running = undefined;
      assert.equal(await etcd.get("/fts/fts/settings"), undefined);

      // Another directory's files in the cluster first: refused without --merge, kept with it.
      // Its a.bin is this one's (the same bytes): merged, it lists both directories' copies.
      const other = await _preloaded(work, "other", { "a.bin": 100_000, "b.bin": 50_000 });
      const first = await runFts([
        "migrate",
        "--data",
        other.dir,
        "--etcd",
        etcd.endpoints,
        ...host,
      ]);
      assert.equal(first.code, 0, first.stderr);
      const taken = await runFts(["migrate", "--data", dir, "--etcd", etcd.endpoints, ...host]);
      assert.equal(taken.code, 2, taken.stderr);
      assert.match(_oneLine(taken.stderr), /already holds files \("a\.bin", "b\.bin"\).*--merge/);
      assert.equal(await _state(dir), before);
      const endpoints = etcd.endpoints;
      const merge = () =>
        runFts(["migrate", "--data", dir, "--etcd", endpoints, ...host, "--merge"]);
      const merged = await merge();
      assert.equal(merged.code, 0, merged.stderr);
      const ls = await runFts(["ls", "--json", "--etcd", etcd.endpoints]);
      assert.equal(ls.code, 0, ls.stderr);
      const names = (JSON.parse(ls.stdout) as { name: string }[]).map((f) => f.name).sort();
      assert.deepEqual(names, ["a.bin", "b.bin"]);
      const a = await runFts(["ls", "a.bin", "--json", "--etcd", etcd.endpoints]);
      const ports = (JSON.parse(a.stdout) as { parts: { replicas: string[] }[] }).parts[0]!
        .replicas.map((id) => Number(id.split(":")[1]));
      assert.equal(ports.length, 2 * REPLICAS, a.stdout);
      const inRange = (base: number) => ports.filter((p) => p >= base && p < base + SERVERS);
      assert.equal(inRange(other.basePort).length, REPLICAS, a.stdout);
      // Run again: nothing to add.
      const again = await merge();
      assert.equal(again.code, 0, again.stderr);
    } finally {
      if (running) {
        running.kill("SIGTERM");
        await running.status;
      }
      await etcd?.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
