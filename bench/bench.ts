/**
 * `deno task bench`: fts against curl+nginx and an rsync daemon, on loopback,
 * in one run; and the HTTP gateway with curl and aria2c (scenario 8); many small
 * files against wget -r and curl -Z (scenario 9, bench/small_files.ts). Prints a
 * Markdown report and writes it into bench/RESULTS.md (its generated block),
 * the chart into bench/RESULTS.svg and the raw figures into
 * bench/runs/DATE-COMMIT-bench.json (`deno task bench:ranges` reads those).
 *
 *   deno task bench [--size 1GiB] [--runs 5] [--warmups 1] [--big-size 4GiB]
 *                   [--clients-size SIZE] [--hosts-size 1GiB] [--only 1,2,...] [--quick]
 *                   [--out PATH]
 *
 * --quick validates the script fast (64 MiB, one run, no warm-up, 256 MiB big
 * file) and writes no report file unless --out is given; so does --only.
 * `--out DIR/NAME.md` writes DIR/NAME.svg and DIR/runs/ beside it.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEFAULT_CONFIG } from "../lib/state/config.ts";
import { parseSize } from "../lib/base/units.ts";
import { sha256File, writeRandomFile } from "./data_files.ts";
import { BenchCluster } from "./fts_cluster.ts";
import { gatewayDownload } from "./gateway_scenario.ts";
import { smallFiles } from "./small_files.ts";
import { ensureTools, NginxServer, RsyncDaemon } from "./peers.ts";
import { shapedHosts } from "./shaped_hosts.ts";
import { freePortRange } from "./port_claims.ts";
import { loadAverage } from "./measure.ts";
import {
  gitCommit,
  machineInfo,
  type Meta,
  renderMarkdown,
  toolVersions,
  writeRun,
} from "./report.ts";
import {
  type BenchContext,
  type BenchFile,
  bigFileMemory,
  coldFetch,
  concurrentClients,
  damagedRegion,
  failover,
  fiftyInstances,
  type Figure,
  type Goal,
  resume,
  type ScenarioResult,
} from "./scenarios.ts";

const DEFAULT_RESULTS = fileURLToPath(new URL("./RESULTS.md", import.meta.url));
const DEFAULT_RUNS = 5;
const MAIN_SERVERS = 6;
const MAIN_REPLICAS = 3;
const BIG_SERVERS = 3;
/** One copy of the big file is enough to measure the client; it saves gigabytes of disk. */
const BIG_REPLICAS = 1;

function _log(line: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
}

function _positive(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`--${flag} must be a non-negative integer, got "${text}"`);
  }
  return value;
}

async function _makeFile(dir: string, name: string, size: number, seed: number) {
  const path = join(dir, name);
  _log(`writing ${name} (${(size / 2 ** 20).toFixed(0)} MiB of random data)`);
  await writeRandomFile(path, size, seed);
  return { name, path, size, digest: await sha256File(path) };
}

/** 7. The big file gets a cluster of its own, with one copy of each part. */
async function _bigFile(ctx: BenchContext, work: string, size: number): Promise<ScenarioResult> {
  const bigSrc = join(work, "big-src");
  await Deno.mkdir(bigSrc);
  const big: BenchFile = await _makeFile(bigSrc, "big.bin", size, 3);
  _log(`preloading into ${BIG_SERVERS} instances, R=${BIG_REPLICAS}, and starting them`);
  const bigCluster = await BenchCluster.start(join(work, "big-data"), {
    servers: BIG_SERVERS,
    replicas: BIG_REPLICAS,
    files: [big.path],
  });
  await Deno.remove(big.path);
  try {
    return await bigFileMemory(ctx, { file: big, cluster: bigCluster });
  } finally {
    await bigCluster.stop();
  }
}

export async function bench(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      size: { type: "string" },
      runs: { type: "string" },
      warmups: { type: "string" },
      "big-size": { type: "string" },
      "clients-size": { type: "string" },
      "hosts-size": { type: "string" },
      only: { type: "string" },
      quick: { type: "boolean" },
      out: { type: "string" },
    },
  });
  const quick = values.quick === true;
  const size = parseSize(values.size ?? (quick ? "64MiB" : "1GiB"));
  // Five runs by default: on a shared 2-core VM single runs vary by +-40 %.
  const runs = Math.max(1, _positive(values.runs, "runs", quick ? 1 : DEFAULT_RUNS));
  const warmups = _positive(values.warmups, "warmups", quick ? 0 : 1);
  const bigSize = parseSize(values["big-size"] ?? (quick ? "256MiB" : "4GiB"));
  const clientsSize = values["clients-size"] !== undefined
    ? parseSize(values["clients-size"])
    : Math.max(1, Math.floor(size / 4));
  const only = values.only === undefined
    ? undefined
    : new Set(values.only.split(",").map((s) => Number(s.trim())));
  const out = values.out ?? (quick || values.only !== undefined ? undefined : DEFAULT_RESULTS);
  if (size < 1 || bigSize < 1) throw new RangeError("--size and --big-size must be positive");

  const loadBefore = await loadAverage();
  const programs = await ensureTools(_log);
  const work = await Deno.makeTempDir({ prefix: "fts-bench-" });
  const cleanups: (() => Promise<void>)[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    cleaned ??= (async () => {
      for (const step of cleanups.reverse()) await step().catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    })();
  const onSignal = () => void cleanup().then(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const figures: Figure[] = [];
  const goals: Goal[] = [];
  try {
    _log(`work dir ${work}; load average ${loadBefore}`);
    const src = join(work, "src");
    await Deno.mkdir(src);
    const file = await _makeFile(src, "bench.bin", size, 1);
    const clientsFile = await _makeFile(src, "clients.bin", clientsSize, 2);
    _log(`preloading into ${MAIN_SERVERS} instances, R=${MAIN_REPLICAS}, and starting them`);
    const cluster = await BenchCluster.start(join(work, "data"), {
      servers: MAIN_SERVERS,
      replicas: MAIN_REPLICAS,
      files: [file.path, clientsFile.path],
    });
    cleanups.push(() => cluster.stop());
    const nginx = await NginxServer.start(programs.nginx!, work, src, freePortRange(1));
    cleanups.push(() => nginx.stop());
    const rsync = await RsyncDaemon.start(programs.rsync!, work, src, freePortRange(1));
    cleanups.push(() => rsync.stop());
    const ctx: BenchContext = {
      work,
      warmups,
      runs,
      partSize: DEFAULT_CONFIG.partSize,
      file,
      clientsFile,
      cluster,
      nginx,
      rsync,
      programs: { curl: programs.curl!, rsync: programs.rsync! },
      log: _log,
    };
    const add = (result: ScenarioResult) => {
      figures.push(...result.figures);
      goals.push(...result.goals);
    };
    // The scenarios in the order they run; a new one is a line here.
    const scenarios: [number, string, () => Promise<ScenarioResult>][] = [
      [1, "cold fetch", () => coldFetch(ctx)],
      [2, "resume", () => resume(ctx)],
      [3, "damaged region", () => damagedRegion(ctx)],
      [4, "failover", () => failover(ctx)],
      [5, "50 instances", () => fiftyInstances(ctx)],
      [6, "16 clients", () => concurrentClients(ctx)],
      [7, "big file", () => _bigFile(ctx, work, bigSize)],
      [8, "gateway download", () => gatewayDownload(ctx)],
      [9, "small files", () => smallFiles(ctx, quick ? 500 : 10_000)],
      [
        10,
        "shaped hosts",
        () => shapedHosts(ctx, parseSize(values["hosts-size"] ?? (quick ? "64MiB" : "1GiB"))),
      ],
    ];
    for (const [number, title, scenario] of scenarios) {
      if (only && !only.has(number)) continue;
      _log(`scenario ${number}: ${title}`);
      add(await scenario());
    }
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  const loadAfter = await loadAverage();
  const meta: Meta = {
    date: new Date().toISOString(),
    machine: await machineInfo(),
    commit: await gitCommit(),
    versions: await toolVersions(programs),
    settings: `file ${(size / 2 ** 20).toFixed(0)} MiB, ${warmups} warm-up + ${runs} runs, ` +
      `fts cluster of ${MAIN_SERVERS} instances R=${MAIN_REPLICAS}, part size ${
        DEFAULT_CONFIG.partSize / 2 ** 20
      } MiB; 16-client file ${(clientsSize / 2 ** 20).toFixed(0)} MiB; big file ${
        (bigSize / 2 ** 30).toFixed(2)
      } GiB on ${BIG_SERVERS} instances R=${BIG_REPLICAS}`,
    loadBefore,
    loadAfter,
  };
  if (!out) {
    console.log(renderMarkdown(meta, figures, goals));
    return 0;
  }
  const { markdown, paths } = await writeRun(out, "bench", meta, { figures, goals });
  console.log(markdown);
  _log(`wrote ${paths.join(", ")}`);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await bench(Deno.args));
}
