/**
 * 10. Several sources at once over real, shaped links: five server hosts
 * (network namespaces on a bridge, bench/test_hosts.ts) whose uplinks send at
 * 200 Mbit/s each (tc tbf), a client host whose link carries 1 Gbit/s both
 * ways, and etcd on a host of its own. Each server host runs `fts cluster
 * --etcd` (one instance, R=2) with its HTTP gateway; the file is preloaded
 * over the network from etcd's host. Contenders, all run in the client host:
 * `fts fetch` from the cluster, curl from nginx on one server host (the same
 * uplink, the file on that host's disk), aria2c with the file's Metalink from
 * the five gateways, and `fts fetch` while one server host is cut off
 * mid-fetch. Every process runs inside a namespace: this process only reads
 * files and link counters.
 *
 * Needs root, ip, tc and etcd; where one is missing the scenario is skipped
 * with a line saying why.
 */
import { join } from "node:path";
import { sha256File, writeRandomFile } from "./data_files.ts";
import { etcdClusterArgs } from "./etcd_cluster_args.ts";
import { EtcdProcess } from "./etcd_process.ts";
import { DENO, MAIN } from "./fts_process.ts";
import { ARIA2C_FLAGS } from "./gateway_scenario.ts";
import { type Outcome, runTimed, sleep } from "./measure.ts";
import { findProgram, NginxServer } from "./peers.ts";
import {
  type BenchContext,
  type BenchFile,
  type Contender,
  emptyDir,
  expectFile,
  type Goal,
  infoRatio,
  medianOf,
  rounds,
  type Run,
  type ScenarioResult,
} from "./scenarios.ts";
import { hostsMode, TestHosts } from "./test_hosts.ts";

const SERVER_HOSTS = 5;
/** Host indexes: the servers are 0-4, then the client, then etcd's own host. */
const CLIENT = SERVER_HOSTS;
const ETCD_HOST = SERVER_HOSTS + 1;
export const SERVER_UPLINK_MBIT = 200;
export const CLIENT_LINK_MBIT = 1000;
const REPLICAS = 2;
const CLUSTER_NAME = "shaped";
const GATEWAY_PORT = 8080;
const NGINX_PORT = 8081;
/** The host with nginx and the gateway whose Metalink aria2c reads. */
const NGINX_HOST = 0;
/** The host cut off mid-fetch: not the one aria2c and curl start from. */
const CUT_HOST = SERVER_HOSTS - 1;
/** `fts fetch --timeout` in every run: its default, said out loud. */
export const FETCH_TIMEOUT_S = 3;
/** What a host cut off mid-fetch may cost beyond the fetch timeout. */
export const CUT_SLACK_S = 0.5;
export const GOAL_LINK_FRACTION = 0.85;
export const GOAL_TIMES_CURL = 4;
export const GOAL_TIMES_ARIA2C = 1.0;
/** aria2c pulls two pieces from each gateway at once; so does fts's second figure. */
const PER_HOST = 2;
const ARIA2C_SPLIT = PER_HOST * SERVER_HOSTS;
/**
 * Parts in flight before fetch counted hosts (its default since is 2 per
 * host, ARIA2C_SPLIT here): the second fts figure, beside the goals, shows
 * what counting them gained.
 */
const HOST_BLIND_PARALLEL = 4;
const PARALLEL_TOOL =
  `fts fetch --parallel ${HOST_BLIND_PARALLEL} (the default before hosts counted)`;
const READY_TIMEOUT_MS = 120_000;
const PRELOAD_TIMEOUT_MS = 30 * 60_000;
const RUN_TIMEOUT_MS = 10 * 60_000;
/** How often the partial file is looked at to cut a host halfway. */
const CUT_POLL_MS = 5;
/** How often the bridge's counters are read to see which hosts send at once. */
const SAMPLE_MS = 250;
/** A host sends "now" when it used a tenth of its uplink in a sample. */
const ACTIVE_FRACTION = 0.1;
/** Time for a restored host's lease keeper and connections to come back. */
const RESTORE_SETTLE_MS = 2_000;

const _bits = (bytes: number) => bytes * 8;

/** What a run moved, as a fraction of a link of `mbit` Mbit/s. */
export function linkFraction(bytes: number, seconds: number, mbit: number): number {
  return _bits(bytes) / seconds / (mbit * 1e6);
}

/** Bytes each bridge port received and sent, from `ip -j -s link show`. */
export function bridgePortBytes(json: string): Map<string, { rx: number; tx: number }> {
  const links = JSON.parse(json) as {
    ifname?: string;
    stats64?: { rx?: { bytes?: number }; tx?: { bytes?: number } };
  }[];
  if (!Array.isArray(links)) throw new TypeError("ip -j -s link show did not give a JSON array");
  return new Map(links.flatMap((link) =>
    link.ifname === undefined ? [] : [[link.ifname, {
      rx: link.stats64?.rx?.bytes ?? 0,
      tx: link.stats64?.tx?.bytes ?? 0,
    }]]
  ));
}

/**
 * The mean number of hosts sending at once: `sent[k][h]` is what host h had
 * sent by sample k; a host counts in an interval when it sent at least
 * `threshold` bytes in it.
 */
export function meanActiveHosts(sent: readonly number[][], threshold: number): number {
  if (sent.length < 2) return 0;
  let total = 0;
  for (let k = 1; k < sent.length; k++) {
    total += sent[k]!.filter((bytes, h) => bytes - (sent[k - 1]![h] ?? 0) >= threshold).length;
  }
  return total / (sent.length - 1);
}

/** The `elapsedMs` of `fts fetch --json`'s result line, in seconds; undefined without one. */
export function fetchElapsedSeconds(stdout: string): number | undefined {
  const last = stdout.trim().split("\n").at(-1) ?? "";
  try {
    const elapsed = (JSON.parse(last) as { elapsedMs?: unknown }).elapsedMs;
    return typeof elapsed === "number" ? elapsed / 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The medians a goal is judged on, in seconds; aria2c and the cut run when measured. */
export interface ShapedTimes {
  fileBytes: number;
  fts: number;
  curl: number;
  aria2c?: number;
  cut?: number;
}

/** The goals of this scenario from its median times. */
export function shapedHostsGoals(times: ShapedTimes): Goal[] {
  const fraction = linkFraction(times.fileBytes, times.fts, CLIENT_LINK_MBIT);
  const goals: Goal[] = [
    {
      name: `shaped hosts: fts fetch / client link (${CLIENT_LINK_MBIT} Mbit/s)`,
      measured: `${fraction.toFixed(2)}`,
      target: `>= ${GOAL_LINK_FRACTION}`,
      met: fraction >= GOAL_LINK_FRACTION,
    },
    _timesGoal("fts fetch vs curl from 1 nginx host", times.curl / times.fts, GOAL_TIMES_CURL),
  ];
  if (times.aria2c !== undefined) {
    goals.push(_timesGoal(
      `fts fetch vs aria2c from ${SERVER_HOSTS} gateways`,
      times.aria2c / times.fts,
      GOAL_TIMES_ARIA2C,
    ));
  }
  if (times.cut !== undefined) {
    const extra = times.cut - times.fts;
    const limit = FETCH_TIMEOUT_S + CUT_SLACK_S;
    goals.push({
      name: `shaped hosts: extra time when a host is cut mid-fetch (--timeout ${FETCH_TIMEOUT_S}s)`,
      measured: `${extra.toFixed(3)} s`,
      target: `<= ${limit} s`,
      met: extra <= limit,
    });
  }
  return goals;
}

function _timesGoal(name: string, speedup: number, min: number): Goal {
  return {
    name: `shaped hosts: ${name} (speed-up)`,
    measured: `${speedup.toFixed(2)}x`,
    target: `>= ${min}x`,
    met: speedup >= min,
  };
}

/** Why this machine cannot run the scenario, or undefined when it can. */
function _unsupported(): string | undefined {
  if (Deno.uid() !== 0) return "needs root for network namespaces";
  for (const program of ["ip", "tc", "etcd"]) {
    if (findProgram(program) === undefined) {
      return `needs ${program} (Debian package ${program === "etcd" ? "etcd-server" : "iproute2"})`;
    }
  }
  if (hostsMode() !== "netns") return "network namespaces cannot be made here";
  return undefined;
}

function _fail(what: string, outcome: Outcome): never {
  throw new Error(
    `${what} exited with code ${outcome.code}: ${
      (outcome.stderr || outcome.stdout).trim().slice(0, 2000)
    }`,
  );
}

export async function shapedHosts(ctx: BenchContext, size: number): Promise<ScenarioResult> {
  const scenario = `10. ${SERVER_HOSTS} hosts at ${SERVER_UPLINK_MBIT} Mbit/s, client at ${
    CLIENT_LINK_MBIT / 1000
  } Gbit/s (${(size / 2 ** 20).toFixed(0)} MiB)`;
  const why = _unsupported();
  if (why !== undefined) {
    ctx.log(`  scenario 10 skipped: it ${why}`);
    return { figures: [], goals: [] };
  }
  const work = join(ctx.work, "shaped");
  await Deno.mkdir(join(work, "src"), { recursive: true });
  const file: BenchFile = {
    name: "hosts.bin",
    path: join(work, "src", "hosts.bin"),
    size,
    digest: "",
  };
  ctx.log(`  writing ${file.name} (${(size / 2 ** 20).toFixed(0)} MiB of random data)`);
  await writeRandomFile(file.path, size, 10);
  file.digest = await sha256File(file.path);
  const net = await TestHosts.create(SERVER_HOSTS + 2);
  try {
    return await _measure(ctx, net, work, file, scenario);
  } finally {
    await net.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

async function _measure(
  ctx: BenchContext,
  net: TestHosts,
  work: string,
  file: BenchFile,
  scenario: string,
): Promise<ScenarioResult> {
  for (let h = 0; h < SERVER_HOSTS; h++) net.shape(h, SERVER_UPLINK_MBIT);
  net.shape(CLIENT, CLIENT_LINK_MBIT);
  net.shapeInbound(CLIENT, CLIENT_LINK_MBIT);
  // Inside the work dir, so that the bench's cleanup (Ctrl-C too) takes etcd's data.
  const etcd = await EtcdProcess.start({ net, hosts: [ETCD_HOST], parentDir: work });
  try {
    return await _startCluster(ctx, net, work, file, scenario, etcd);
  } finally {
    await etcd.stop();
  }
}

/** The five server hosts' clusters, the file preloaded, nginx; then the rounds. */
async function _startCluster(
  ctx: BenchContext,
  net: TestHosts,
  work: string,
  file: BenchFile,
  scenario: string,
  etcd: EtcdProcess,
): Promise<ScenarioResult> {
  const flags = ["--etcd", etcd.endpoints, "--cluster", CLUSTER_NAME];
  const basePort = net.portRange(1);
  for (let h = 0; h < SERVER_HOSTS; h++) {
    const cluster = net.spawnFts(
      h,
      etcdClusterArgs({
        flags,
        host: net.hosts[h]!.address,
        servers: 1,
        basePort,
        replicas: REPLICAS,
        // Healing off: a host cut off for a few seconds must not start copies.
        extra: ["--heal-after", "0", "--http", String(GATEWAY_PORT)],
        data: join(work, `host${h}`),
      }),
    );
    // One at a time: the first records the settings the others then agree with.
    await cluster.waitFor(/ready/, READY_TIMEOUT_MS);
  }
  ctx.log(`  preloading over the network into ${SERVER_HOSTS} hosts, R=${REPLICAS}`);
  const preload = await net.fts(ETCD_HOST, [
    "preload",
    file.path,
    ...flags,
    // The first host made the cluster: its data directory holds the operator key.
    "--data",
    join(work, "host0"),
    "--quiet",
  ], {
    timeoutMs: PRELOAD_TIMEOUT_MS,
  });
  if (preload.code !== 0) throw new Error(`fts preload over etcd failed: ${preload.stderr}`);
  const nginx = await NginxServer.start(
    findProgram("nginx") ?? "nginx",
    work,
    join(work, "src"),
    NGINX_PORT,
    { prefix: net.prefix(NGINX_HOST), host: net.hosts[NGINX_HOST]!.address },
  );
  try {
    return await _rounds(ctx, net, work, file, scenario, flags, nginx);
  } finally {
    await nginx.stop();
  }
}

/** Runs `program ARGS...` in host i, timed. */
function _timedIn(
  net: TestHosts,
  i: number,
  program: string,
  args: string[],
  during?: (exited: () => boolean) => Promise<void>,
): Promise<Outcome> {
  const [ip, ...prefix] = net.prefix(i);
  let exited = false;
  return runTimed(ip!, [...prefix, program, ...args], {
    timeoutMs: RUN_TIMEOUT_MS,
    during: during ? () => during(() => exited) : undefined,
    onExit: () => (exited = true),
  });
}

/** What each server host has sent so far, read from its bridge port. */
async function _sentByHost(net: TestHosts): Promise<number[]> {
  const output = await new Deno.Command("ip", {
    args: ["-n", net.switchNamespace, "-j", "-s", "link", "show"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `ip -s link in the bridge's namespace failed: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  const ports = bridgePortBytes(new TextDecoder().decode(output.stdout));
  // A port receives what its host sends.
  return Array.from({ length: SERVER_HOSTS }, (_, h) => ports.get(`h${h}`)?.rx ?? 0);
}

async function _rounds(
  ctx: BenchContext,
  net: TestHosts,
  work: string,
  file: BenchFile,
  scenario: string,
  flags: string[],
  nginx: NginxServer,
): Promise<ScenarioResult> {
  const place = (name: string) => join(work, name);
  const activeThreshold = ACTIVE_FRACTION * SERVER_UPLINK_MBIT * 1e6 / 8 * SAMPLE_MS / 1000;
  /** Runs a download in the client host, noting how many hosts sent and how evenly. */
  const watched = async (
    what: string,
    program: string,
    args: string[],
    disturb?: (exited: () => boolean) => Promise<string>,
  ): Promise<Run> => {
    const samples: number[][] = [await _sentByHost(net)];
    let disturbed = "";
    const outcome = await _timedIn(net, CLIENT, program, args, async (exited) => {
      const sampling = (async () => {
        while (!exited()) {
          await sleep(SAMPLE_MS);
          samples.push(await _sentByHost(net));
        }
      })();
      if (disturb) disturbed = await disturb(exited);
      await sampling;
    });
    if (outcome.code !== 0) _fail(what, outcome);
    samples.push(await _sentByHost(net));
    const sent = samples.at(-1)!.map((bytes, h) => bytes - samples[0]![h]!);
    const total = sent.reduce((a, b) => a + b, 0);
    const shares = sent.map((bytes) => `${Math.round((100 * bytes) / Math.max(1, total))}`);
    const rate = file.size / outcome.seconds;
    const own = fetchElapsedSeconds(outcome.stdout);
    return {
      seconds: outcome.seconds,
      bytesSent: total,
      ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
      note: [
        `${(rate / 1e6).toFixed(1)} MB/s = ${
          linkFraction(file.size, outcome.seconds, CLIENT_LINK_MBIT).toFixed(2)
        } of the client link`,
        `hosts sending at once ${meanActiveHosts(samples, activeThreshold).toFixed(1)}`,
        `% per host ${shares.join("/")}`,
        // Beside the wall time: what start-up and looking the file up cost.
        ...(own !== undefined ? [`fetch's own time ${own.toFixed(2)} s`] : []),
        ...(disturbed ? [disturbed] : []),
      ].join("; "),
    };
  };
  const fts = (
    dest: string,
    disturb?: (exited: () => boolean) => Promise<string>,
    extra: string[] = [],
  ) =>
  () =>
    watched("fts fetch", DENO, [
      "run",
      "--allow-all",
      "--quiet",
      MAIN,
      "fetch",
      file.name,
      dest,
      ...flags,
      "--timeout",
      `${FETCH_TIMEOUT_S}s`,
      "--json",
      ...extra,
    ], disturb);
  const cutDest = place("cut-fts");
  let cut = false;
  const cutHalfway = async (exited: () => boolean): Promise<string> => {
    const partial = join(cutDest, `${file.name}.fts-partial`);
    const started = performance.now();
    while (!exited()) {
      const blocks = await Deno.stat(partial).then((s) => s.blocks ?? 0, () => 0);
      if (blocks * 512 >= file.size / 2) break;
      await sleep(CUT_POLL_MS);
    }
    if (exited()) return "ended before halfway: nothing cut";
    net.cutHost(CUT_HOST);
    cut = true;
    return `host ${CUT_HOST} cut at ${((performance.now() - started) / 1000).toFixed(2)} s`;
  };
  const contenders: Contender[] = [
    {
      tool: "fts fetch",
      prepare: () => emptyDir(place("fts")),
      run: fts(place("fts")),
      check: () => expectFile(join(place("fts"), file.name), file),
    },
    {
      // Beside the goals: fewer parts in flight than hosts, as before hosts counted.
      tool: PARALLEL_TOOL,
      prepare: () => emptyDir(place("fts-parallel")),
      run: fts(place("fts-parallel"), undefined, ["--parallel", String(HOST_BLIND_PARALLEL)]),
      check: () => expectFile(join(place("fts-parallel"), file.name), file),
    },
    {
      tool: `curl (nginx on 1 host)`,
      prepare: () => emptyDir(place("curl")),
      run: () =>
        watched("curl", findProgram("curl") ?? "curl", [
          "-sS",
          "--fail",
          "-o",
          join(place("curl"), file.name),
          nginx.url(file.name),
        ]),
      check: () => expectFile(join(place("curl"), file.name), file),
    },
    {
      tool: `fts fetch, host ${CUT_HOST} cut halfway`,
      prepare: () => emptyDir(cutDest),
      run: fts(cutDest, cutHalfway),
      check: () => expectFile(join(cutDest, file.name), file),
      after: async () => {
        if (!cut) return;
        cut = false;
        net.restoreHost(CUT_HOST);
        await sleep(RESTORE_SETTLE_MS);
      },
    },
  ];
  const aria2c = findProgram("aria2c");
  const aria2cTool = `aria2c (${SERVER_HOSTS} gateways, Metalink)`;
  if (aria2c) {
    const metalink = `http://${net.hosts[NGINX_HOST]!.address}:${GATEWAY_PORT}/files/${
      encodeURIComponent(file.name)
    }.meta4`;
    contenders.push({
      tool: aria2cTool,
      prepare: () => emptyDir(place("aria2c")),
      run: () =>
        watched("aria2c", aria2c, [
          ...ARIA2C_FLAGS.filter((flag) => !flag.startsWith("--split=")),
          `--split=${ARIA2C_SPLIT}`,
          "-d",
          place("aria2c"),
          metalink,
        ]),
      check: () => expectFile(join(place("aria2c"), file.name), file),
    });
  } else {
    ctx.log("  aria2c is not installed (apt-get install aria2): its figure is left out");
  }
  const figures = await rounds(ctx, scenario, contenders);
  const curlSeconds = medianOf(figures, "curl (nginx on 1 host)");
  return {
    figures,
    goals: [
      ...shapedHostsGoals({
        fileBytes: file.size,
        fts: medianOf(figures, "fts fetch"),
        curl: curlSeconds,
        cut: medianOf(figures, `fts fetch, host ${CUT_HOST} cut halfway`),
        ...(aria2c ? { aria2c: medianOf(figures, aria2cTool) } : {}),
      }),
      infoRatio(
        `shaped hosts: fts fetch --parallel ${HOST_BLIND_PARALLEL} / client link`,
        linkFraction(file.size, medianOf(figures, PARALLEL_TOOL), CLIENT_LINK_MBIT),
      ),
      infoRatio(
        `shaped hosts: curl from nginx / one server uplink (${SERVER_UPLINK_MBIT} Mbit/s)`,
        linkFraction(file.size, curlSeconds, SERVER_UPLINK_MBIT),
      ),
    ],
  };
}
