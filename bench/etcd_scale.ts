/**
 * How publishing, listing and starting a fetch scale with the number of
 * files, for the file store and for etcd, on real processes, and how much an
 * instance of a cluster in etcd holds resident when etcd has 100,000 entries.
 *
 *     deno task bench:scale [--sizes 100,100000] [--store file|etcd|both] [--out PATH]
 *
 * At each size, a manifest of that many one-part entries (manifest_scale.ts
 * makes them), a running `fts cluster` of 6 instances (R=3) over it, and:
 *
 * - publish: `fts upload` of a 1000-byte file timed from spawn to exit
 *   (CLI_SAMPLES runs), and one change() of one new entry through the store
 *   alone, in this process (CHANGE_SAMPLES);
 * - list: `fts ls` of the whole manifest, from spawn to exit (CLI_SAMPLES),
 *   and `fts ls NAME` of one file (no goal: it stands beside the listing,
 *   which grows with what it prints);
 * - fetch start: `fts fetch` of a 1000-byte file from spawn to exit (Deno's
 *   start, the locate and one part: the CLI does not say when the first byte
 *   lands, and for one part that is nearly the end), and an instance's answer
 *   to file.get (the locate step, GET_SAMPLES over names spread through the
 *   manifest).
 *
 * The goals: each of the three CLI measures at the largest size within
 * SCALE_GOAL_RATIO times its median at the smallest, per store. The report
 * goes into bench/SCALE.md (its generated block) with a chart beside it, and
 * the raw figures into bench/runs/; with --sizes or --store, only with --out.
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
import { fileURLToPath } from "node:url";
import { EtcdCluster } from "../lib/etcd/etcd_cluster.ts";
import { FileManifestStore } from "../lib/state/file_manifest_store.ts";
import { type ManifestStore } from "../lib/state/manifest_store.ts";
import { Peer } from "../lib/client/peer.ts";
import { runPool } from "../lib/base/run_pool.ts";
import { instanceCommand } from "../lib/ops/instance_bundle.ts";
import { DrainedProcess } from "./drained_process.ts";
import { FtsProcess, killAfter, runFts, type RunResult, spawnFts } from "./fts_process.ts";
import { concatBytes } from "../lib/base/concat_bytes.ts";
import { childEnv, loadAverage, median, residentMemory } from "./measure.ts";
import { gitCommit, machineInfo, type Meta, renderMarkdown, writeRun } from "./report.ts";
import { type Figure, type Goal, infoRatio, ratioGoal, type ScenarioResult } from "./scenarios.ts";
import { freePortRange } from "./port_claims.ts";
import {
  SCALE_PART_BYTES,
  SCALE_REPLICAS,
  SCALE_SERVERS,
  scaleDataDir,
  scaleEntry,
} from "./manifest_scale.ts";

const DEFAULT_SIZES = [100, 100_000];
/** Goal: a CLI measure at the largest size at most this many times its time at the smallest. */
const SCALE_GOAL_RATIO = 2;
const DEFAULT_REPORT = fileURLToPath(new URL("./SCALE.md", import.meta.url));

/** Publishes of one entry through the store alone, at each size. */
const CHANGE_SAMPLES = 20;
/** `fts upload` and `fts fetch` runs at each size. */
const CLI_SAMPLES = 5;
/** Rounds of the CLI commands run before those measured, at each size. */
const CLI_WARMUPS = 1;
/** file.get requests timed at each size. */
const GET_SAMPLES = 50;
/** Entries written per etcd transaction while filling (etcd allows 128 operations). */
const FILL_PUTS_PER_TXN = 100;
const FILL_TXNS_AT_ONCE = 8;
/** Requests sent to the lone instance before its memory is read. */
const MEMORY_GETS = 200;
const MEMORY_LISTS = 3;
/** A CLI command measured is killed after this long. */
const CLI_TIMEOUT_MS = 120_000;
/** Bytes of each file uploaded and fetched. */
const SMALL_FILE_BYTES = 1000;
const ETCD_HEALTHY_TIMEOUT_MS = 30_000;
const ETCD_POLL_MS = 200;
const CLUSTER_READY_TIMEOUT_MS = 120_000;
/** How long a bench request waits for an instance (a cold list of 100,000 takes a while). */
const REQUEST_TIMEOUT_MS = 120_000;
const CLUSTER_NAME = "scale";

/** Every sample (ms) of one store at one size. */
export interface ScaleRow {
  store: string;
  files: number;
  changeMs: number[];
  uploadMs: number[];
  lsMs: number[];
  /** `fts ls`, from spawn to its first line of output. */
  lsFirstMs: number[];
  /** `fts ls NAME`: one file's entry. */
  lsOneMs: number[];
  getMs: number[];
  fetchMs: number[];
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

function _log(line: string): void {
  console.error(`[scale ${new Date().toISOString().slice(11, 19)}] ${line}`);
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
}): Promise<ScaleRow> {
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
  const lists: number[] = [];
  const firstLines: number[] = [];
  const lookups: number[] = [];
  // The first rounds warm the page cache and Deno's module cache, and are not
  // kept: otherwise the smallest size, measured first, would look slowest.
  for (let i = -CLI_WARMUPS; i < CLI_SAMPLES; i++) {
    const keep = i >= 0;
    const name = `up-${count}-${i + CLI_WARMUPS}.bin`;
    const source = join(work, name);
    await Deno.writeFile(source, crypto.getRandomValues(new Uint8Array(SMALL_FILE_BYTES)));
    const started = performance.now();
    const result = await runFts(["upload", source, ...flags, "--identity", identity]);
    if (keep) uploads.push(performance.now() - started);
    if (result.code !== 0) throw new Error(`fts upload (${label}, ${count}): ${result.stderr}`);
    const dest = join(work, `dest-${label}-${count}-${i + CLI_WARMUPS}`);
    await Deno.mkdir(dest);
    const begun = performance.now();
    const got = await runFts(["fetch", name, dest, ...flags, "-q"]);
    if (keep) fetches.push(performance.now() - begun);
    if (got.code !== 0) throw new Error(`fts fetch (${label}, ${count}): ${got.stderr}`);
    const ls = await _lines(["ls", ...flags]);
    if (keep) lists.push(ls.totalMs);
    if (keep) firstLines.push(ls.firstLineMs);
    if (ls.code !== 0) throw new Error(`fts ls (${label}, ${count}): ${ls.stderr}`);
    const lines = ls.stdout.split("\n").filter((line) => line.trim() !== "").length;
    if (lines < count) throw new Error(`fts ls (${label}, ${count}) printed ${lines} lines`);
    const looked = performance.now();
    const one = await runFts(["ls", scaleEntry(Math.floor(count / 2)).name, ...flags]);
    if (keep) lookups.push(performance.now() - looked);
    if (one.code !== 0) throw new Error(`fts ls NAME (${label}, ${count}): ${one.stderr}`);
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
    changeMs: changes,
    uploadMs: uploads,
    lsMs: lists,
    lsFirstMs: firstLines,
    lsOneMs: lookups,
    getMs: gets,
    fetchMs: fetches,
  };
}

/** Runs `fts ARGS...` to its end, timing from the spawn its first line of output and its exit. */
async function _lines(
  args: string[],
): Promise<RunResult & { firstLineMs: number; totalMs: number }> {
  const started = performance.now();
  const child = spawnFts(args);
  const timer = killAfter(child, CLI_TIMEOUT_MS);
  try {
    const stderr = new Response(child.stderr).text();
    let firstLineMs = NaN;
    const chunks: Uint8Array[] = [];
    for await (const chunk of child.stdout) {
      if (Number.isNaN(firstLineMs) && chunk.includes(0x0a)) {
        firstLineMs = performance.now() - started;
      }
      chunks.push(chunk);
    }
    const { code } = await child.status;
    const totalMs = performance.now() - started;
    const stdout = new TextDecoder().decode(concatBytes(...chunks));
    return { code, stdout, stderr: await stderr, firstLineMs, totalMs };
  } finally {
    clearTimeout(timer);
  }
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

async function _fileRows(sizes: number[], work: string): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  for (const count of sizes) {
    const basePort = freePortRange(SCALE_SERVERS);
    _log(`file store, ${count} files: writing the manifest, starting the cluster`);
    const dir = await scaleDataDir(count, basePort);
    const cluster = await _cluster(["--data", dir, "--heal-after", "0"]);
    _log(`file store, ${count} files: measuring`);
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
      _log(`file store, ${count} files: stopping`);
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
): Promise<{ rows: ScaleRow[]; memory: number[]; fillSeconds: number }> {
  const etcd = await _startEtcd(work);
  const cluster = new EtcdCluster([etcd.url], CLUSTER_NAME);
  const basePort = freePortRange(SCALE_SERVERS);
  const replicas = [0, 1, 2].map((k) => `127.0.0.1:${basePort + k}`);
  const flags = ["--etcd", etcd.url, "--cluster", CLUSTER_NAME];
  const rows: ScaleRow[] = [];
  let filled = 0;
  let fillMs = 0;
  try {
    for (const count of sizes) {
      _log(`etcd, ${count} files: filling, starting the cluster`);
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
      _log(`etcd, ${count} files: measuring`);
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
        _log(`etcd, ${count} files: stopping`);
        await _stop(running);
      }
    }
    _log(`etcd, ${filled} files: one fts serve's memory`);
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
  // Started as a cluster starts its instances: the bundled script, the instance V8 flags.
  const { program, prefix } = await instanceCommand(work);
  const serve = new DrainedProcess(
    new Deno.Command(program, {
      args: [
        ...prefix,
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
      ],
      env: childEnv(),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
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

/** What is measured, with the row's samples; the first three carry the goal. */
const _MEASURES: { key: keyof ScaleRow & `${string}Ms`; what: string; goal: boolean }[] = [
  { key: "uploadMs", what: "publish one more file: `fts upload` 1 KB", goal: true },
  { key: "lsFirstMs", what: "`fts ls` of every file, to its first line", goal: true },
  { key: "lsMs", what: "`fts ls` of every file, to its end", goal: false },
  { key: "fetchMs", what: "start of a fetch: `fts fetch` 1 KB", goal: true },
  { key: "lsOneMs", what: "`fts ls NAME` of one file", goal: false },
  { key: "changeMs", what: "publish: change() alone, in process", goal: false },
  { key: "getMs", what: "locate: one file.get", goal: false },
];

const _count = (n: number) => n.toLocaleString("en-US");

/** The figures (a group per store and measure, a bar per size) and the goals of `rows`. */
export function scaleResults(rows: ScaleRow[]): ScenarioResult {
  const figures: Figure[] = [];
  const goals: Goal[] = [];
  for (const store of [...new Set(rows.map((r) => r.store))]) {
    const mine = rows.filter((r) => r.store === store).sort((a, b) => a.files - b.files);
    const smallest = mine[0]!;
    const largest = mine.at(-1)!;
    for (const { key, what, goal } of _MEASURES) {
      for (const row of mine) {
        figures.push({
          scenario: `${store} store: ${what}`,
          tool: `${_count(row.files)} files`,
          seconds: row[key].map((ms) => ms / 1000),
        });
      }
      if (smallest === largest) continue;
      const name = `${store} store: ${what}, ${_count(largest.files)} / ${
        _count(smallest.files)
      } files`;
      const ratio = median(largest[key]) / median(smallest[key]);
      goals.push(goal ? ratioGoal(name, ratio, SCALE_GOAL_RATIO) : infoRatio(name, ratio));
    }
  }
  return { figures, goals };
}

async function _etcdVersion(): Promise<string> {
  try {
    const out = await new Deno.Command("etcd", { args: ["--version"], stdout: "piped" }).output();
    return /etcd Version:\s*(\S+)/.exec(new TextDecoder().decode(out.stdout))?.[1] ?? "?";
  } catch {
    return "not installed";
  }
}

const _INTRO = [
  "Each size is a manifest of that many one-part entries and a 6-instance cluster (R=3) over",
  "it; etcd is one local member. Times run from spawn to exit of the `fts` command (Deno's",
  "start included, ~0.3-0.4 s here); medians of the samples. `fts fetch` of a one-part file",
  "stands for the start of a fetch: the CLI does not say when the first byte lands. `fts ls`",
  "prints the list as its pages arrive: its goal is on the time to its first line, and the",
  "time to its last, which grows with the lines it prints, stands beside with no goal. The",
  `goal: each such CLI measure at the largest size within ${SCALE_GOAL_RATIO}x its time at the smallest.`,
];

/** `deno task bench:scale`: measures, prints and (for a full run or --out) writes the report. */
export async function scaleBench(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { sizes: { type: "string" }, store: { type: "string" }, out: { type: "string" } },
  });
  const sizes = values.sizes?.split(",").map(Number) ?? DEFAULT_SIZES;
  if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1)) {
    throw new RangeError(`--sizes takes counts of files, like 100,100000: ${values.sizes}`);
  }
  const which = values.store ?? "both";
  if (!["file", "etcd", "both"].includes(which)) {
    throw new RangeError(`--store takes file, etcd or both: ${which}`);
  }
  const custom = values.sizes !== undefined || values.store !== undefined;
  const out = values.out ?? (custom ? undefined : DEFAULT_REPORT);
  const loadBefore = await loadAverage();
  const work = await Deno.makeTempDir({ prefix: "fts-etcd-scale-" });
  let rows: ScaleRow[];
  let etcd: Awaited<ReturnType<typeof _etcdRows>> | undefined;
  try {
    rows = which === "etcd" ? [] : await _fileRows(sizes, work);
    etcd = which === "file" ? undefined : await _etcdRows(sizes, work);
    rows.push(...(etcd?.rows ?? []));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  const { figures, goals } = scaleResults(rows);
  if (etcd) {
    const [ready, gets, lists, peak] = etcd.memory;
    const largest = _count(sizes.at(-1)!);
    goals.push({
      name: `etcd: fts serve over ${largest} entries, VmRSS ready / after ${MEMORY_GETS} ` +
        `file.get / after ${MEMORY_LISTS} file.list (VmHWM) (no goal)`,
      measured: [ready, gets, lists].map((b) => (b! / 1e6).toFixed(1)).join(" / ") +
        ` MB (${(peak! / 1e6).toFixed(1)} MB)`,
      target: "-",
      met: true,
      value: lists!,
    }, {
      name: `etcd: filling ${largest} entries (no goal)`,
      measured: `${etcd.fillSeconds.toFixed(1)} s`,
      target: "-",
      met: true,
      value: etcd.fillSeconds,
    });
  }
  const meta: Meta = {
    date: new Date().toISOString(),
    machine: await machineInfo(),
    commit: await gitCommit(),
    versions: `Deno ${Deno.version.deno}, etcd ${await _etcdVersion()}`,
    settings: `sizes ${sizes.map(_count).join(", ")} files; stores: ${which}; ` +
      `${CLI_WARMUPS} warm-up + ${CLI_SAMPLES} runs of each CLI command, ` +
      `${CHANGE_SAMPLES} change(), ` +
      `${GET_SAMPLES} file.get per size`,
    loadBefore,
    loadAfter: await loadAverage(),
  };
  const title = "fts manifest scale: file store and etcd";
  if (!out) {
    console.log(renderMarkdown(meta, figures, goals, { title, intro: _INTRO }));
    return;
  }
  const { markdown, paths } = await writeRun(out, "scale", meta, { figures, goals }, {
    title,
    intro: _INTRO,
  });
  console.log(markdown);
  _log(`wrote ${paths.join(", ")}`);
}

if (import.meta.main) {
  await scaleBench(Deno.args);
}
