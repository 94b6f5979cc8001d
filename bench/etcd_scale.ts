/**
 * How publishing and starting a fetch scale with the number of files, for the
 * file store and for etcd, on real processes, and how much an instance of a
 * cluster in etcd holds resident when etcd has 100,000 entries.
 *
 *     deno task bench:scale [--sizes 1000,10000,100000] [--store file|etcd|both]
 *
 * At each size, a manifest of that many one-part entries (manifest_scale.ts
 * makes them), a running `fts cluster` of 6 instances (R=3) over it, and:
 *
 * - publish: one change() of one new entry through the store alone, in this
 *   process (median of CHANGE_SAMPLES), and `fts upload` of a 1000-byte file
 *   timed from spawn to exit (median of CLI_SAMPLES);
 * - fetch start: an instance's answer to file.get (the locate step, median of
 *   GET_SAMPLES over names spread through the manifest), and `fts fetch` of a
 *   1000-byte file from spawn to exit (Deno's start, the locate and one part).
 *
 * etcd is a local single member (the `etcd` program must be installed); its
 * entries are written straight into its keys, FILL_PUTS_PER_TXN to a
 * transaction and FILL_TXNS_AT_ONCE transactions at once, each size adding
 * to the last. Then an `fts serve --etcd` started on its own is measured
 * (VmRSS) once ready, after MEMORY_GETS file.get and after MEMORY_LISTS
 * file.list requests.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { type ManifestStore } from "../lib/state/manifest_store.ts";
import { Peer } from "../lib/client/peer.ts";
import { runPool } from "../lib/base/run_pool.ts";
import { DrainedProcess } from "./drained_process.ts";
import { FtsProcess, runFts } from "./fts_process.ts";
import { median, residentMemory } from "./measure.ts";
import { freePortRange } from "./port_claims.ts";
import {
  SCALE_PART_BYTES,
  SCALE_REPLICAS,
  SCALE_SERVERS,
  scaleDataDir,
  scaleEntry,
} from "./manifest_scale.ts";

const DEFAULT_SIZES = [1_000, 10_000, 100_000];
/** Publishes of one entry through the store alone, at each size. */
const CHANGE_SAMPLES = 20;
/** `fts upload` and `fts fetch` runs at each size. */
const CLI_SAMPLES = 5;
/** file.get requests timed at each size. */
const GET_SAMPLES = 50;
/** Entries written per etcd transaction while filling (etcd allows 128 operations). */
const FILL_PUTS_PER_TXN = 100;
const FILL_TXNS_AT_ONCE = 8;
/** Requests sent to the lone instance before its memory is read. */
const MEMORY_GETS = 200;
const MEMORY_LISTS = 3;
/** Bytes of each file uploaded and fetched. */
const SMALL_FILE_BYTES = 1000;
const ETCD_HEALTHY_TIMEOUT_MS = 30_000;
const ETCD_POLL_MS = 200;
const CLUSTER_READY_TIMEOUT_MS = 120_000;
/** How long a bench request waits for an instance (a cold list of 100,000 takes a while). */
const REQUEST_TIMEOUT_MS = 120_000;
const CLUSTER_NAME = "scale";

interface _Row {
  store: string;
  files: number;
  changeMs: number;
  uploadMs: number;
  getMs: number;
  fetchMs: number;
}

/** A single etcd member on loopback, its data in `dir`. */
async function _startEtcd(dir: string): Promise<{ url: string; process: DrainedProcess }> {
  const port = freePortRange(2);
  const url = `http://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${port + 1}`;
  const process = new DrainedProcess(
    new Deno.Command("etcd", {
      args: [
        "--data-dir",
        join(dir, "etcd"),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        `default=${peer}`,
        "--log-level",
        "warn",
        "--logger",
        "zap",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  const deadline = Date.now() + ETCD_HEALTHY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      const answer = await (await fetch(`${url}/health`)).text();
      if (answer.includes('"true"')) return { url, process };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, ETCD_POLL_MS));
  }
  process.kill("SIGKILL");
  throw new Error(`etcd at ${url} not healthy after ${ETCD_HEALTHY_TIMEOUT_MS} ms`);
}

/** Writes entries `from`..`to`-1 straight into etcd's keys, as the manifest store lays them out. */
async function _fill(cluster: EtcdCluster, from: number, to: number, replicas: string[]) {
  const jobs: (() => Promise<void>)[] = [];
  for (let start = from; start < to; start += FILL_PUTS_PER_TXN) {
    const end = Math.min(to, start + FILL_PUTS_PER_TXN);
    jobs.push(async () => {
      const ops = [];
      for (let i = start; i < end; i++) {
        const entry = scaleEntry(i, replicas);
        const header = { ...entry, partCount: entry.parts.length };
        ops.push({ put: { key: cluster.keys.file(entry.name), value: JSON.stringify(header) } });
      }
      await cluster.etcd.txn([], ops);
    });
  }
  await runPool(jobs, FILL_TXNS_AT_ONCE);
}

async function _timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

/** The figures of one size, with a cluster running over `count` entries. */
async function _measure(options: {
  label: string;
  count: number;
  store: ManifestStore;
  flags: string[];
  address: string;
  replicas: string[];
  work: string;
}): Promise<_Row> {
  const { label, count, store, flags, work } = options;
  const changes: number[] = [];
  for (let i = 0; i < CHANGE_SAMPLES; i++) {
    const entry = { ...scaleEntry(count + i, options.replicas), name: `put-${count}-${i}.bin` };
    changes.push(
      await _timed(() => store.change([entry.name], () => ({ puts: [entry], result: 0 }))),
    );
  }
  // Made before the clock runs: a first upload would make it.
  const identity = join(work, "bench.id");
  await runFts(["whoami", "--identity", identity]);
  const uploads: number[] = [];
  const fetches: number[] = [];
  for (let i = 0; i < CLI_SAMPLES; i++) {
    const name = `up-${count}-${i}.bin`;
    const source = join(work, name);
    await Deno.writeFile(source, crypto.getRandomValues(new Uint8Array(SMALL_FILE_BYTES)));
    const started = performance.now();
    const result = await runFts(["upload", source, ...flags, "--identity", identity]);
    uploads.push(performance.now() - started);
    if (result.code !== 0) throw new Error(`fts upload (${label}, ${count}): ${result.stderr}`);
    const dest = join(work, `dest-${label}-${count}-${i}`);
    await Deno.mkdir(dest);
    const begun = performance.now();
    const got = await runFts(["fetch", name, dest, ...flags, "-q"]);
    fetches.push(performance.now() - begun);
    if (got.code !== 0) throw new Error(`fts fetch (${label}, ${count}): ${got.stderr}`);
  }
  const peer = await Peer.connect(options.address, { stallTimeoutMs: REQUEST_TIMEOUT_MS });
  const gets: number[] = [];
  try {
    await peer.getFile(scaleEntry(0).name);
    for (let i = 0; i < GET_SAMPLES; i++) {
      const name = scaleEntry(Math.floor((i * count) / GET_SAMPLES)).name;
      gets.push(await _timed(() => peer.getFile(name)));
    }
  } finally {
    peer.close();
  }
  return {
    store: label,
    files: count,
    changeMs: median(changes),
    uploadMs: median(uploads),
    getMs: median(gets),
    fetchMs: median(fetches),
  };
}

async function _cluster(args: string[]): Promise<FtsProcess> {
  const cluster = new FtsProcess(["cluster", ...args, "--plain", "--quiet"]);
  try {
    await cluster.waitFor(/fts cluster: ready/, CLUSTER_READY_TIMEOUT_MS);
  } catch (error) {
    await _stop(cluster);
    throw error;
  }
  return cluster;
}

async function _stop(process: DrainedProcess): Promise<void> {
  process.kill("SIGTERM");
  await process.status;
}

async function _fileRows(sizes: number[], work: string): Promise<_Row[]> {
  const rows: _Row[] = [];
  for (const count of sizes) {
    const basePort = freePortRange(SCALE_SERVERS);
    const dir = await scaleDataDir(count, basePort);
    const cluster = await _cluster(["--data", dir, "--heal-after", "0"]);
    try {
      rows.push(
        await _measure({
          label: "file",
          count,
          store: new FileManifestStore(dir),
          flags: ["--data", dir],
          address: `127.0.0.1:${basePort}`,
          replicas: [String(basePort), String(basePort + 1), String(basePort + 2)],
          work,
        }),
      );
    } finally {
      await _stop(cluster);
      await Deno.remove(dir, { recursive: true });
    }
  }
  return rows;
}

/** The figures at each size in etcd, and the lone instance's memory at the largest. */
async function _etcdRows(
  sizes: number[],
  work: string,
): Promise<{ rows: _Row[]; memory: number[]; fillSeconds: number }> {
  const etcd = await _startEtcd(work);
  const cluster = new EtcdCluster([etcd.url], CLUSTER_NAME);
  const basePort = freePortRange(SCALE_SERVERS);
  const replicas = [0, 1, 2].map((k) => `127.0.0.1:${basePort + k}`);
  const flags = ["--etcd", etcd.url, "--cluster", CLUSTER_NAME];
  const rows: _Row[] = [];
  let filled = 0;
  let fillMs = 0;
  try {
    for (const count of sizes) {
      fillMs += await _timed(() => _fill(cluster, filled, count, replicas));
      filled = count;
      const running = await _cluster([
        ...flags,
        "--host",
        "127.0.0.1",
        "--servers",
        String(SCALE_SERVERS),
        "--base-port",
        String(basePort),
        "--replicas",
        String(SCALE_REPLICAS),
        "--part-size",
        String(SCALE_PART_BYTES),
        "--data",
        join(work, "host"),
      ]);
      try {
        rows.push(
          await _measure({
            label: "etcd",
            count,
            store: cluster.manifest,
            flags,
            address: replicas[0]!,
            replicas,
            work,
          }),
        );
      } finally {
        await _stop(running);
      }
    }
    const memory = await _loneInstanceMemory(flags, work, filled);
    return { rows, memory, fillSeconds: fillMs / 1000 };
  } finally {
    cluster.close();
    await _stop(etcd.process);
  }
}

/** VmRSS of an `fts serve --etcd` once ready, after file.get and after file.list requests. */
async function _loneInstanceMemory(flags: string[], work: string, count: number) {
  const store = join(work, "lone");
  const serve = new FtsProcess([
    "serve",
    ...flags,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--store",
    store,
    "--data",
    store,
  ]);
  try {
    const address = (await serve.waitFor(/listening on (\S+)/, CLUSTER_READY_TIMEOUT_MS))[1]!;
    const rss = () => residentMemory(serve.pid)!.rssBytes;
    const ready = rss();
    const peer = await Peer.connect(address, { stallTimeoutMs: REQUEST_TIMEOUT_MS });
    try {
      for (let i = 0; i < MEMORY_GETS; i++) {
        await peer.getFile(scaleEntry(Math.floor((i * count) / MEMORY_GETS)).name);
      }
      const afterGets = rss();
      for (let i = 0; i < MEMORY_LISTS; i++) {
        const files = await peer.listFiles();
        if (files.length < count) throw new Error(`file.list gave ${files.length} files`);
      }
      const memory = residentMemory(serve.pid)!;
      return [ready, afterGets, memory.rssBytes, memory.peakBytes];
    } finally {
      peer.close();
    }
  } finally {
    await _stop(serve);
  }
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: { sizes: { type: "string" }, store: { type: "string" } },
  });
  const sizes = args.values.sizes?.split(",").map(Number) ?? DEFAULT_SIZES;
  if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1)) {
    throw new RangeError(`--sizes takes counts of files, like 1000,10000: ${args.values.sizes}`);
  }
  const which = args.values.store ?? "both";
  const work = await Deno.makeTempDir({ prefix: "fts-etcd-scale-" });
  const ms = (value: number) => value.toFixed(value < 10 ? 2 : 0);
  try {
    const rows = which === "etcd" ? [] : await _fileRows(sizes, work);
    const etcd = which === "file" ? undefined : await _etcdRows(sizes, work);
    rows.push(...(etcd?.rows ?? []));
    console.log(
      "| store | files | publish: change() alone (ms) | publish: `fts upload` 1 KB (ms) |" +
        " locate: file.get (ms) | `fts fetch` 1 KB (ms) |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (const row of rows) {
      console.log(
        `| ${row.store} | ${row.files} | ${ms(row.changeMs)} | ${ms(row.uploadMs)} | ` +
          `${ms(row.getMs)} | ${ms(row.fetchMs)} |`,
      );
    }
    if (etcd) {
      const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
      const [ready, gets, lists, peak] = etcd.memory.map(mb);
      console.log(
        `\nfilling etcd with ${sizes.at(-1)} entries took ${etcd.fillSeconds.toFixed(1)} s\n` +
          `fts serve --etcd over ${sizes.at(-1)} entries: VmRSS ${ready} ready, ${gets} after ` +
          `${MEMORY_GETS} file.get, ${lists} after ${MEMORY_LISTS} file.list (VmHWM ${peak})`,
      );
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
