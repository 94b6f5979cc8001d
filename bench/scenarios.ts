/**
 * The benchmark's scenarios. Each runs its contenders in rounds,
 * interleaved so that the machine's noise falls on all of them alike: the
 * first rounds are warm-ups, the rest are measured. Each returns figures (what
 * was measured) and goals (ratios against the targets).
 */
import { join } from "node:path";
import { damageFile, sha256File } from "./data_files.ts";
import { FtsProcess } from "./fts_process.ts";
import { freePortRange } from "./port_claims.ts";
import { BenchCluster } from "./fts_cluster.ts";
import {
  bytesWritten,
  loadAverage,
  machineBusySeconds,
  median,
  type Outcome,
  proportionalMemory,
  residentMemory,
  runTimed,
  sleep,
  syncDisks,
} from "./measure.ts";
import { type NginxServer, rsyncBytesReceived, type RsyncDaemon } from "./peers.ts";

export interface BenchFile {
  name: string;
  path: string;
  size: number;
  digest: string;
}

export interface BenchContext {
  work: string;
  warmups: number;
  runs: number;
  partSize: number;
  file: BenchFile;
  clientsFile: BenchFile;
  cluster: BenchCluster;
  nginx: NginxServer;
  rsync: RsyncDaemon;
  programs: { curl: string; rsync: string };
  log: (line: string) => void;
}

export interface Figure {
  scenario: string;
  tool: string;
  /** Seconds of each measured run. */
  seconds: number[];
  /** The 1-minute load average just before each measured run, when it was read. */
  loads?: number[];
  /** Median bytes the servers sent per run, counted on the server side. */
  bytesSent?: number;
  /** Highest client peak resident memory over the measured runs. */
  peakRssBytes?: number;
  /** Median CPU seconds the whole machine spent per run: client, servers and kernel. */
  cpuSeconds?: number;
  note?: string;
}

export interface Goal {
  name: string;
  measured: string;
  target: string;
  met: boolean;
  /** The measured figure as a number (a ratio, seconds, bytes...), for ranges across runs. */
  value?: number;
}

export interface ScenarioResult {
  figures: Figure[];
  goals: Goal[];
}

/** One measured run of a contender. */
export interface Run {
  seconds: number;
  /** The 1-minute load average just before the run (rounds() reads it). */
  load?: number;
  /** CPU seconds the whole machine spent during the run (rounds() reads it). */
  cpuSeconds?: number;
  bytesSent?: number;
  peakRssBytes?: number;
  note?: string;
}

export interface Contender {
  tool: string;
  /** Sets the destination up; not timed. */
  prepare?: () => Promise<void>;
  run: () => Promise<Run>;
  /** Checks the result of the first measured run; not timed. */
  check?: () => Promise<void>;
  /** Tidies up after every run (restarting what a run killed); not timed. */
  after?: () => Promise<void>;
}

const REGION_BYTES = 1024 * 1024;
const RESUME_PRESENT_FRACTION = 0.7;
const CLIENTS = 16;
/** Goal: 50 instances all listening within this many seconds of launching `fts cluster`. */
const FIFTY_READY_GOAL_S = 2;
const FAILOVER_POLL_MS = 5;
/** How long /proc write counters are watched to see which instance is streaming. */
const STREAMING_WINDOW_MS = 20;

function _fail(what: string, outcome: Outcome): never {
  throw new Error(
    `${what} exited with code ${outcome.code}: ${
      (outcome.stderr || outcome.stdout).trim().slice(0, 2000)
    }`,
  );
}

/**
 * The contenders in a shuffled order, the same for a given round in every
 * bench run. The machine's slow spells come and go in a rhythm of their own
 * (writing 1 GiB into the page cache took 0.3 s or 2-3 s here, often every
 * other run whoever wrote it); in a fixed order a contender could meet them
 * in most of its runs and another in few.
 */
export function shuffledForRound<T>(items: readonly T[], round: number): T[] {
  // mulberry32, seeded by the round.
  let state = (round + 1) * 0x9e3779b9;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Runs every contender warmups+runs times, interleaved, in a new order each
 * round (shuffledForRound); returns a figure per contender.
 */
export async function rounds(
  ctx: BenchContext,
  scenario: string,
  contenders: Contender[],
): Promise<Figure[]> {
  const measured = new Map<string, Run[]>(contenders.map((c) => [c.tool, []]));
  for (let round = 0; round < ctx.warmups + ctx.runs; round++) {
    const warm = round < ctx.warmups;
    for (const contender of shuffledForRound(contenders, round)) {
      await contender.prepare?.();
      await syncDisks();
      const load = Number((await loadAverage()).split(" ")[0]);
      const busyBefore = machineBusySeconds();
      const run = await contender.run();
      const busyAfter = machineBusySeconds();
      ctx.log(
        `  ${scenario} / ${contender.tool}: ${run.seconds.toFixed(3)} s${warm ? " (warm-up)" : ""}${
          run.note ? ` (${run.note})` : ""
        }`,
      );
      await contender.after?.();
      if (warm) continue;
      if (round === ctx.warmups) await contender.check?.();
      const cpuSeconds = busyBefore !== undefined && busyAfter !== undefined
        ? busyAfter - busyBefore
        : undefined;
      measured.get(contender.tool)!.push({
        ...run,
        load,
        ...(cpuSeconds !== undefined ? { cpuSeconds } : {}),
      });
    }
  }
  return contenders.map(({ tool }) => {
    const runs = measured.get(tool)!;
    const bytes = runs.flatMap((r) => (r.bytesSent === undefined ? [] : [r.bytesSent]));
    const peaks = runs.flatMap((r) => (r.peakRssBytes === undefined ? [] : [r.peakRssBytes]));
    const cpu = runs.flatMap((r) => (r.cpuSeconds === undefined ? [] : [r.cpuSeconds]));
    const notes = [...new Set(runs.flatMap((r) => (r.note ? [r.note] : [])))];
    return {
      scenario,
      tool,
      seconds: runs.map((r) => r.seconds),
      loads: runs.flatMap((r) => (r.load === undefined || Number.isNaN(r.load) ? [] : [r.load])),
      ...(bytes.length > 0 ? { bytesSent: median(bytes) } : {}),
      ...(peaks.length > 0 ? { peakRssBytes: Math.max(...peaks) } : {}),
      ...(cpu.length > 0 ? { cpuSeconds: median(cpu) } : {}),
      ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
    };
  });
}

export function medianOf(figures: Figure[], tool: string): number {
  const figure = figures.find((f) => f.tool === tool);
  if (!figure) throw new Error(`No figure for ${tool}`);
  return median(figure.seconds);
}

/** A goal of at most `max` times the other contender's time. */
export function ratioGoal(name: string, ratio: number, max: number): Goal {
  return {
    name,
    measured: `${ratio.toFixed(2)}x`,
    target: `<= ${max.toFixed(1)}x`,
    met: ratio <= max,
    value: ratio,
  };
}

export async function emptyDir(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
  await Deno.mkdir(path, { recursive: true });
}

export async function expectFile(path: string, file: BenchFile): Promise<void> {
  const { size } = await Deno.stat(path);
  if (size !== file.size) throw new Error(`${path} has ${size} bytes, expected ${file.size}`);
  if ((await sha256File(path)) !== file.digest) throw new Error(`${path} differs from the source`);
}

/** Copies the first `length` bytes of `from` into a new file `to`. */
async function _copyPrefix(from: string, to: string, length: number): Promise<void> {
  const source = await Deno.open(from, { read: true });
  const target = await Deno.open(to, { write: true, create: true, truncate: true });
  try {
    const buffer = new Uint8Array(8 * 1024 * 1024);
    let done = 0;
    while (done < length) {
      const n = await source.read(buffer.subarray(0, Math.min(buffer.length, length - done)));
      if (n === null) throw new Error(`${from} ended after ${done} bytes`);
      let written = 0;
      while (written < n) written += await target.write(buffer.subarray(written, n));
      done += n;
    }
  } finally {
    source.close();
    target.close();
  }
}

/** `fts fetch` of `file` into `destDir`, counting bytes on the cluster's side. */
export function ftsRun(
  ctx: BenchContext,
  file: BenchFile,
  destDir: string,
  during?: (exited: () => boolean) => Promise<string | undefined>,
  extra: string[] = [],
): () => Promise<Run> {
  return async () => {
    const { program, args } = ctx.cluster.fetchCommand(file.name, destDir, extra);
    const before = await ctx.cluster.bytesServed();
    let exited = false;
    let note: string | undefined;
    const outcome = await runTimed(program, args, {
      during: during ? async () => void (note = await during(() => exited)) : undefined,
      onExit: () => (exited = true),
    });
    if (outcome.code !== 0) _fail("fts fetch", outcome);
    const bytesSent = BenchCluster.served(before, await ctx.cluster.bytesServed());
    const result = JSON.parse(outcome.stdout.trim().split("\n").at(-1) ?? "{}") as {
      failovers?: number;
    };
    if (result.failovers) note = `${note ? `${note}, ` : ""}${result.failovers} failovers`;
    return {
      seconds: outcome.seconds,
      ...(bytesSent !== undefined ? { bytesSent } : {}),
      ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
      ...(note ? { note } : {}),
    };
  };
}

export function curlRun(ctx: BenchContext, destPath: string, extra: string[]): () => Promise<Run> {
  return async () => {
    const before = await ctx.nginx.bytesSent();
    const outcome = await runTimed(ctx.programs.curl, [
      "-sS",
      "--fail",
      ...extra,
      "-o",
      destPath,
      ctx.nginx.url(ctx.file.name),
    ]);
    if (outcome.code !== 0) _fail("curl", outcome);
    return {
      seconds: outcome.seconds,
      bytesSent: (await ctx.nginx.bytesSent()) - before,
      ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
    };
  };
}

function _rsyncRun(ctx: BenchContext, destPath: string, extra: string[]): () => Promise<Run> {
  return async () => {
    const outcome = await runTimed(ctx.programs.rsync, [
      "--stats",
      ...extra,
      ctx.rsync.url(ctx.file.name),
      destPath,
    ]);
    if (outcome.code !== 0) _fail("rsync", outcome);
    return {
      seconds: outcome.seconds,
      bytesSent: rsyncBytesReceived(outcome.stdout),
      ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
    };
  };
}

type Tool = "fts" | "curl" | "rsync";

/**
 * A contender fetching the scenario's file into its own directory, set up by
 * `setUp` (given the file's path there) and checked against the source.
 */
function _contender(
  ctx: BenchContext,
  place: string,
  tool: string,
  run: (destDir: string, target: string) => () => Promise<Run>,
  setUp?: (target: string) => Promise<void>,
): Contender {
  const destDir = join(ctx.work, place);
  const target = join(destDir, ctx.file.name);
  return {
    tool,
    prepare: async () => {
      await emptyDir(destDir);
      await setUp?.(target);
    },
    run: run(destDir, target),
    check: () => expectFile(target, ctx.file),
  };
}

/** The three ways to fetch the scenario's file, with extra flags for curl and rsync. */
function _runs(ctx: BenchContext, curlFlags: string[], rsyncFlags: string[]) {
  return {
    fts: (destDir: string) => ftsRun(ctx, ctx.file, destDir),
    curl: (_: string, target: string) => curlRun(ctx, target, curlFlags),
    rsync: (_: string, target: string) => _rsyncRun(ctx, target, rsyncFlags),
  } satisfies Record<Tool, (destDir: string, target: string) => () => Promise<Run>>;
}

async function _clear(ctx: BenchContext, places: string[]): Promise<void> {
  for (const place of places) {
    await Deno.remove(join(ctx.work, place), { recursive: true }).catch(() => {});
  }
}

/** A ratio reported beside the goals, with no target of its own. */
export function infoRatio(name: string, ratio: number): Goal {
  return {
    name: `${name} (no goal)`,
    measured: `${ratio.toFixed(2)}x`,
    target: "-",
    met: true,
    value: ratio,
  };
}

/** fts fetch checking every byte with SHA-256, beside the default check (XXH3-128). */
const _VERIFY_TOOL = "fts fetch --verify (SHA-256)";

/** 1. Cold fetch into an empty directory. */
export async function coldFetch(ctx: BenchContext): Promise<ScenarioResult> {
  const runs = _runs(ctx, [], []);
  const figures = await rounds(ctx, "1. cold fetch", [
    _contender(ctx, "cold-fts", "fts fetch", runs.fts),
    // What checking every byte with SHA-256 instead of XXH3-128 costs.
    _contender(
      ctx,
      "cold-fts-verify",
      _VERIFY_TOOL,
      (destDir) => ftsRun(ctx, ctx.file, destDir, undefined, ["--verify"]),
    ),
    _contender(ctx, "cold-curl", "curl (nginx)", runs.curl),
    _contender(ctx, "cold-rsync", "rsync (daemon)", runs.rsync),
  ]);
  await _clear(ctx, ["cold-fts", "cold-fts-verify", "cold-curl", "cold-rsync"]);
  const fts = medianOf(figures, "fts fetch");
  const curl = medianOf(figures, "curl (nginx)");
  const rsync = medianOf(figures, "rsync (daemon)");
  const fastest = curl <= rsync ? "curl+nginx" : "rsync daemon";
  const best = (tool: string) => Math.min(...figures.find((f) => f.tool === tool)!.seconds);
  return {
    figures,
    goals: [
      {
        ...ratioGoal("cold fetch: fts / fastest peer of the run", fts / Math.min(curl, rsync), 1.0),
        measured: `${(fts / Math.min(curl, rsync)).toFixed(2)}x (${fastest})`,
      },
      infoRatio("cold fetch: fts / curl+nginx", fts / curl),
      infoRatio("cold fetch: fts / rsync daemon", fts / rsync),
      infoRatio(
        "cold fetch: fts / fastest peer, best run of each",
        best("fts fetch") / Math.min(best("curl (nginx)"), best("rsync (daemon)")),
      ),
      infoRatio(
        "cold fetch: fts --verify (SHA-256) / fastest peer",
        medianOf(figures, _VERIFY_TOOL) / Math.min(curl, rsync),
      ),
    ],
  };
}

/** 2. Resume with the first 70 % present (a plain truncated file, no control file). */
export async function resume(ctx: BenchContext): Promise<ScenarioResult> {
  const present = Math.floor(ctx.file.size * RESUME_PRESENT_FRACTION);
  const missing = ctx.file.size - present;
  const setUp = (target: string) => _copyPrefix(ctx.file.path, target, present);
  const runs = _runs(ctx, ["-C", "-"], ["--partial", "--append-verify"]);
  const rsyncTool = "rsync --partial --append-verify";
  const figures = await rounds(ctx, "2. resume 70 %", [
    _contender(ctx, "resume-fts", "fts fetch", runs.fts, setUp),
    _contender(ctx, "resume-curl", "curl -C -", runs.curl, setUp),
    _contender(ctx, "resume-rsync", rsyncTool, runs.rsync, setUp),
  ]);
  await _clear(ctx, ["resume-fts", "resume-curl", "resume-rsync"]);
  const fts = figures.find((f) => f.tool === "fts fetch")!;
  // The instances count part payload only (no frame headers), so nothing but
  // the missing bytes may show up; nginx's $bytes_sent includes its headers.
  const sent = fts.bytesSent ?? Infinity;
  return {
    figures,
    goals: [
      ratioGoal(
        "resume 70 %: fts / curl -C -",
        median(fts.seconds) / medianOf(figures, "curl -C -"),
        1.0,
      ),
      infoRatio(
        "resume 70 %: fts / rsync --append-verify",
        median(fts.seconds) / medianOf(figures, rsyncTool),
      ),
      {
        name: "resume 70 %: fts payload bytes sent beyond the missing 30 %",
        measured: `${sent - missing} bytes`,
        target: "0 bytes",
        met: sent === missing,
        value: sent - missing,
      },
    ],
  };
}

/** 3. One damaged 1 MiB region inside an otherwise complete file. */
export async function damagedRegion(ctx: BenchContext): Promise<ScenarioResult> {
  const length = Math.min(REGION_BYTES, ctx.file.size);
  const offset = Math.min(Math.floor(ctx.file.size * 0.4) + 12_345, ctx.file.size - length);
  const setUp = async (target: string) => {
    await Deno.copyFile(ctx.file.path, target);
    await damageFile(target, offset, length);
  };
  // --ignore-times: the sizes match, so rsync's quick check must not skip the file.
  const runs = _runs(ctx, [], ["--inplace", "--ignore-times"]);
  const figures = await rounds(ctx, "3. damaged 1 MiB region", [
    _contender(ctx, "damaged-fts", "fts fetch", runs.fts, setUp),
    _contender(ctx, "damaged-rsync", "rsync --inplace", runs.rsync, setUp),
  ]);
  await _clear(ctx, ["damaged-fts", "damaged-rsync"]);
  const fts = figures.find((f) => f.tool === "fts fetch")!;
  const sent = fts.bytesSent ?? Infinity;
  return {
    figures,
    goals: [
      ratioGoal(
        "damaged region: fts / rsync --inplace",
        median(fts.seconds) / medianOf(figures, "rsync --inplace"),
        0.3,
      ),
      {
        name: "damaged region: parts fts fetched",
        measured: `${(sent / ctx.partSize).toFixed(2)} parts`,
        target: "<= 1 part",
        met: sent <= ctx.partSize,
        value: sent / ctx.partSize,
      },
    ],
  };
}

/** 4. Failover: the instance a fetch is reading from is SIGKILLed halfway. */
export async function failover(ctx: BenchContext): Promise<ScenarioResult> {
  const scenario = "4. failover";
  const destDir = join(ctx.work, "failover");
  const partial = join(destDir, `${ctx.file.name}.fts-partial`);
  let killedPort: number | undefined;
  const killHalfway = async (exited: () => boolean): Promise<string | undefined> => {
    // Halfway: half the file's blocks are written into the (sparse) partial file.
    while (!exited()) {
      const blocks = await Deno.stat(partial).then((s) => s.blocks ?? 0, () => 0);
      if (blocks * 512 >= ctx.file.size / 2) break;
      await sleep(FAILOVER_POLL_MS);
    }
    if (exited()) return "ended before halfway: nothing killed";
    // The instance streaming to us is the one whose socket writes grow fastest now.
    const pids = new Map<number, number>();
    for (const port of ctx.cluster.ports) {
      const pid = await ctx.cluster.pidOf(port);
      if (pid !== undefined) pids.set(port, pid);
    }
    const first = new Map([...pids].map(([port, pid]) => [port, bytesWritten(pid) ?? 0]));
    await sleep(STREAMING_WINDOW_MS);
    let best: { port: number; delta: number } | undefined;
    for (const [port, pid] of pids) {
      const delta = (bytesWritten(pid) ?? 0) - first.get(port)!;
      if (!best || delta > best.delta) best = { port, delta };
    }
    if (!best || exited()) return "ended before halfway: nothing killed";
    Deno.kill(pids.get(best.port)!, "SIGKILL");
    killedPort = best.port;
    return `instance ${best.port} killed halfway`;
  };
  const figures = await rounds(ctx, scenario, [
    {
      tool: "fts fetch, undisturbed",
      prepare: () => emptyDir(destDir),
      run: ftsRun(ctx, ctx.file, destDir),
    },
    {
      tool: "fts fetch, serving instance SIGKILLed halfway",
      prepare: () => emptyDir(destDir),
      run: ftsRun(ctx, ctx.file, destDir, killHalfway),
      check: () => expectFile(join(destDir, ctx.file.name), ctx.file),
      after: async () => {
        if (killedPort === undefined) return;
        const port = killedPort;
        killedPort = undefined;
        await ctx.cluster.restart(port);
      },
    },
  ]);
  await emptyDir(destDir);
  const extra = medianOf(figures, "fts fetch, serving instance SIGKILLed halfway") -
    medianOf(figures, "fts fetch, undisturbed");
  return {
    figures,
    goals: [{
      name: "failover: extra time over an undisturbed fetch",
      measured: `${extra.toFixed(3)} s`,
      target: "< 0.5 s",
      met: extra < 0.5,
      value: extra,
    }],
  };
}

/** 5. 50 instances: time from launching `fts cluster` to its ready line, memory each. */
export async function fiftyInstances(ctx: BenchContext): Promise<ScenarioResult> {
  const scenario = "5. 50 instances";
  const servers = 50;
  const dir = join(ctx.work, "fifty");
  const basePort = freePortRange(servers);
  const ports = Array.from({ length: servers }, (_, i) => basePort + i);
  const rssPerRun: number[][] = [];
  const pssPerRun: number[][] = [];
  const listening: number[] = [];
  const figures = await rounds(ctx, scenario, [{
    tool: "fts cluster --servers 50",
    run: async () => {
      const started = performance.now();
      const supervisor = new FtsProcess([
        "cluster",
        "--data",
        dir,
        "--servers",
        String(servers),
        "--base-port",
        String(basePort),
        "--replicas",
        "3",
      ]);
      try {
        await supervisor.waitFor(/fts cluster: ready/, 120_000);
        const seconds = (performance.now() - started) / 1000;
        // Count, don't assume: every port must accept a connection.
        let up = 0;
        const rss: number[] = [];
        const pss: number[] = [];
        for (const port of ports) {
          try {
            (await Deno.connect({ hostname: "127.0.0.1", port })).close();
            up++;
          } catch { /* not listening */ }
          const pid = Number(
            await Deno.readTextFile(join(dir, "run", `${port}.pid`)).catch(() => "0"),
          );
          const memory = pid > 0 ? residentMemory(pid) : undefined;
          if (memory) rss.push(memory.rssBytes);
          const proportional = pid > 0 ? proportionalMemory(pid) : undefined;
          if (proportional !== undefined) pss.push(proportional);
        }
        rssPerRun.push(rss);
        pssPerRun.push(pss);
        listening.push(up);
        return { seconds, note: `${up}/${servers} listening` };
      } finally {
        supervisor.kill("SIGTERM");
        await supervisor.status;
      }
    },
  }]);
  // The warm-up's figures are in the arrays too; keep the measured runs only.
  const measuredRss = rssPerRun.slice(ctx.warmups).flat();
  const measuredUp = listening.slice(ctx.warmups);
  const rssMedian = median(measuredRss);
  const rssMax = Math.max(...measuredRss);
  const pssMedian = median(pssPerRun.slice(ctx.warmups).flat());
  const figure = figures[0]!;
  figure.note = `${Math.min(...measuredUp)}/${servers} listening; RSS per instance median ${
    (rssMedian / 1e6).toFixed(1)
  } MB, max ${(rssMax / 1e6).toFixed(1)} MB; PSS median ${(pssMedian / 1e6).toFixed(1)} MB`;
  const seconds = median(figure.seconds);
  return {
    figures,
    goals: [
      {
        name: "50 instances: time until all listen",
        measured: `${seconds.toFixed(2)} s, ${Math.min(...measuredUp)}/${servers} listening`,
        target: `<= ${FIFTY_READY_GOAL_S} s, all listening`,
        met: seconds <= FIFTY_READY_GOAL_S && Math.min(...measuredUp) === servers,
        value: seconds,
      },
      {
        name: "50 instances: resident memory per instance (max RSS)",
        measured: `${(rssMax / 1e6).toFixed(1)} MB`,
        target: "< 40 MB",
        met: rssMax < 40e6,
        value: rssMax,
      },
      {
        name: "50 instances: memory per instance, shared pages split (median PSS; no goal)",
        measured: `${(pssMedian / 1e6).toFixed(1)} MB`,
        target: "-",
        met: true,
        value: pssMedian,
      },
    ],
  };
}

/** 6. 16 concurrent clients against one client, same file. */
export async function concurrentClients(ctx: BenchContext): Promise<ScenarioResult> {
  const scenario = `6. ${CLIENTS} clients (${
    (ctx.clientsFile.size / 2 ** 20).toFixed(0)
  } MiB file)`;
  const file = ctx.clientsFile;
  // Sixteen clients make fts sync 16 files at once; this disk sustains about
  // 350 MB/s of that, which would measure the disk, not the servers. In RAM
  // (tmpfs) both figures measure fts.
  const ram = await _ramDir((CLIENTS + 1) * file.size * 1.1);
  const base = ram ?? ctx.work;
  const single = join(base, "clients-1");
  const many = Array.from({ length: CLIENTS }, (_, i) => join(base, `clients-${CLIENTS}-${i}`));
  let failures = 0;
  const figures = await rounds(ctx, scenario, [
    {
      tool: "1 client",
      prepare: () => emptyDir(single),
      run: ftsRun(ctx, file, single),
      check: () => expectFile(join(single, file.name), file),
    },
    {
      tool: `${CLIENTS} clients at once`,
      prepare: async () => {
        for (const dir of many) await emptyDir(dir);
      },
      run: async () => {
        const before = await ctx.cluster.bytesServed();
        const started = performance.now();
        const outcomes = await Promise.all(many.map((dir) => {
          const { program, args } = ctx.cluster.fetchCommand(file.name, dir);
          return runTimed(program, args);
        }));
        const seconds = (performance.now() - started) / 1000;
        const sent = BenchCluster.served(before, await ctx.cluster.bytesServed());
        const failed = outcomes.filter((o) => o.code !== 0).length;
        failures += failed;
        const peaks = outcomes.flatMap((o) => (o.peakRssBytes ? [o.peakRssBytes] : []));
        return {
          seconds,
          ...(sent !== undefined ? { bytesSent: sent } : {}),
          ...(peaks.length > 0 ? { peakRssBytes: Math.max(...peaks) } : {}),
          note: `${failed} failed`,
        };
      },
      check: async () => {
        for (const dir of many) await expectFile(join(dir, file.name), file);
      },
    },
  ]);
  await Deno.remove(single, { recursive: true }).catch(() => {});
  for (const dir of many) await Deno.remove(dir, { recursive: true }).catch(() => {});
  if (ram) await Deno.remove(ram, { recursive: true }).catch(() => {});
  const one = file.size / medianOf(figures, "1 client");
  const aggregate = (CLIENTS * file.size) / medianOf(figures, `${CLIENTS} clients at once`);
  for (const figure of figures) {
    const rate = figure.tool === "1 client" ? one : aggregate;
    figure.note = `${(rate / 1e6).toFixed(0)} MB/s${figure.note ? `; ${figure.note}` : ""}; into ${
      ram ? "tmpfs" : "the work dir"
    }`;
  }
  return {
    figures,
    goals: [{
      name: `${CLIENTS} clients: aggregate / single-client throughput`,
      measured: `${(aggregate / one).toFixed(2)}x, ${failures} failures`,
      target: ">= 0.8x, no failures",
      met: aggregate / one >= 0.8 && failures === 0,
      value: aggregate / one,
    }],
  };
}

/** A fresh directory in /dev/shm (RAM) when it has `bytes` free; undefined otherwise. */
async function _ramDir(bytes: number): Promise<string | undefined> {
  try {
    const df = await new Deno.Command("df", { args: ["-B1", "--output=avail", "/dev/shm"] })
      .output();
    const free = Number(new TextDecoder().decode(df.stdout).trim().split("\n").at(-1));
    if (df.code !== 0 || !(free > bytes)) return undefined;
    return await Deno.makeTempDir({ dir: "/dev/shm", prefix: "fts-bench-" });
  } catch {
    return undefined;
  }
}

/** 7. Client peak resident memory fetching a big file (its own cluster). */
export async function bigFileMemory(
  ctx: BenchContext,
  big: { file: BenchFile; cluster: BenchCluster },
): Promise<ScenarioResult> {
  const scenario = `7. big file (${(big.file.size / 2 ** 30).toFixed(2)} GiB)`;
  const destDir = join(ctx.work, "big");
  const figures = await rounds({ ...ctx, cluster: big.cluster }, scenario, [{
    tool: "fts fetch",
    prepare: () => emptyDir(destDir),
    run: ftsRun({ ...ctx, cluster: big.cluster }, big.file, destDir),
    check: () => expectFile(join(destDir, big.file.name), big.file),
  }]);
  await emptyDir(destDir);
  const peak = figures[0]!.peakRssBytes ?? Infinity;
  return {
    figures,
    goals: [{
      name: `client peak RSS, ${(big.file.size / 2 ** 30).toFixed(2)} GiB file`,
      measured: `${(peak / 1e6).toFixed(1)} MB`,
      target: "< 150 MB",
      met: peak < 150e6,
      value: peak,
    }],
  };
}
