/**
 * Chaos soak: several clients fetch and upload while a seeded nemesis kills and
 * restarts instances, corrupts stored copies and interrupts clients, always
 * within the fault budget: for every part, at most R-1 of its holders are down
 * or hold a corrupt copy at any moment, and at least R instances are up (an
 * upload needs R live instances for its new parts). At the end every completed transfer
 * must be byte-identical to its source, no transfer may have failed, the
 * manifest must match the stored parts, and no process or file descriptor may
 * have leaked.
 *
 *     deno task soak [--seconds 60] [--seed N]
 *
 * The seed decides the files, the cluster's ports (so placement), the clients'
 * choices and the nemesis's whole schedule (planNemesis); the same seed replays
 * the same run, up to the timing of real processes.
 */
import { portFree } from "../lib/base/ports.ts";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { processAlive } from "../lib/base/fs_util.ts";
import { FREE_PORT_FIRST, FREE_PORT_LAST } from "../lib/base/ports.ts";
import { controlRequest, runningSupervisor } from "../lib/ops/instances.ts";
import {
  damageFile,
  FtsProcess,
  readManifestJson,
  runFts,
  sha256File,
  storedPartPath,
  tempDir,
  writeRandomFile,
} from "./harness.ts";
import { newSeed, pick, randomInt, seededRandom } from "./seeded_random.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** A down instance comes back after this long at most (in the schedule). */
const MAX_DOWN_MS = 4_000;
/** Gap between two nemesis actions. */
const NEMESIS_GAP_MS: [number, number] = [300, 1_000];
/** One client run (fetch or upload) longer than this counts as hung. */
const RUN_TIMEOUT_MS = 120_000;
/** File descriptors an idle process may hold above its baseline (timers, lazily opened files). */
const FD_SLACK = 3;
/** Port slots per seed: room for up to this many instances. */
const PORTS_PER_SEED = 20;
/** Clients are slowed so transfers last long enough for faults to land mid-transfer. */
const CLIENT_RATE = "3MiB";

export interface SoakOptions {
  seconds: number;
  seed: number;
  servers?: number;
  replicas?: number;
  fetchers?: number;
  uploaders?: number;
  /** Where progress lines go (default: nowhere). */
  log?: (line: string) => void;
  /**
   * Check this process's own descriptors too (default true). Off inside the
   * test suite, where other test modules run in the same process at once.
   */
  checkOwnDescriptors?: boolean;
}

export interface SoakReport {
  seed: number;
  /** SHA-256 over the nemesis schedule: equal seeds give equal schedules. */
  scheduleDigest: string;
  nemesis: Record<NemesisAction["type"], number>;
  fetches: number;
  uploads: number;
  /** Client runs interrupted by the nemesis and resumed. */
  resumed: number;
  /** Everything that broke an invariant; empty on success. */
  violations: string[];
}

export type NemesisAction =
  | { type: "kill"; instance: number }
  | { type: "start"; instance: number }
  | { type: "corrupt"; instance: number; part: number; offset: number }
  | { type: "restore"; instance: number; part: number }
  | { type: "interrupt"; client: number; signal: "SIGKILL" | "SIGINT" };

export interface NemesisStep {
  atMs: number;
  action: NemesisAction;
}

/** A part of a preloaded file and the instances (by index) that hold it. */
export interface PartHolders {
  size: number;
  holders: number[];
}

/**
 * The nemesis's schedule, a pure function of its inputs. It simulates which
 * instances are down and which copies are corrupt, and only picks actions
 * that keep every part within the budget (at most R-1 bad holders) and at
 * least R instances up.
 */
export function planNemesis(
  seed: number,
  durationMs: number,
  parts: readonly PartHolders[],
  replicas: number,
  clients: number,
): NemesisStep[] {
  const random = seededRandom(seed ^ 0x5eed);
  const instances = new Set(parts.flatMap((p) => p.holders));
  const down = new Map<number, number>();
  const corrupt = new Set<string>();
  const copy = (instance: number, part: number) => `${instance}:${part}`;
  const bad = (part: number, extra?: number) =>
    parts[part]!.holders.filter((h) => h === extra || down.has(h) || corrupt.has(copy(h, part)))
      .length;
  const holds = (instance: number) =>
    parts.flatMap((p, index) => (p.holders.includes(instance) ? [index] : []));
  const steps: NemesisStep[] = [];
  let at = 0;
  while (true) {
    at += randomInt(random, ...NEMESIS_GAP_MS);
    if (at >= durationMs) break;
    const overdue = [...down].find(([, since]) => at - since >= MAX_DOWN_MS);
    if (overdue) {
      down.delete(overdue[0]);
      steps.push({ atMs: at, action: { type: "start", instance: overdue[0] } });
      continue;
    }
    // Uploads place new parts on live instances only: R of them must stay up.
    const killable = down.size >= instances.size - replicas
      ? []
      : [...instances].filter((i) =>
        !down.has(i) && holds(i).every((part) => bad(part, i) <= replicas - 1)
      );
    const corruptible = parts.flatMap((p, part) =>
      p.holders.filter((h) => !corrupt.has(copy(h, part)) && bad(part, h) <= replicas - 1)
        .map((instance) => ({ instance, part }))
    );
    const options: [NemesisAction["type"], number][] = [
      ["kill", killable.length > 0 ? 3 : 0],
      ["start", down.size > 0 ? 2 : 0],
      ["corrupt", corruptible.length > 0 ? 2 : 0],
      ["restore", corrupt.size > 0 ? 1 : 0],
      ["interrupt", clients > 0 ? 2 : 0],
    ];
    const total = options.reduce((sum, [, weight]) => sum + weight, 0);
    let roll = random() * total;
    const type = options.find(([, weight]) => (roll -= weight) < 0)?.[0] ?? "interrupt";
    let action: NemesisAction;
    if (type === "kill") {
      const instance = pick(random, killable);
      down.set(instance, at);
      action = { type, instance };
    } else if (type === "start") {
      const instance = pick(random, [...down.keys()]);
      down.delete(instance);
      action = { type, instance };
    } else if (type === "corrupt") {
      const { instance, part } = pick(random, corruptible);
      corrupt.add(copy(instance, part));
      action = { type, instance, part, offset: randomInt(random, 0, parts[part]!.size - 16) };
    } else if (type === "restore") {
      const [instance, part] = pick(random, [...corrupt]).split(":").map(Number) as [
        number,
        number,
      ];
      corrupt.delete(copy(instance, part));
      action = { type, instance, part };
    } else {
      action = {
        type: "interrupt",
        client: randomInt(random, 0, clients - 1),
        signal: random() < 0.7 ? "SIGKILL" : "SIGINT",
      };
    }
    steps.push({ atMs: at, action });
  }
  return steps;
}

/**
 * The first port for a seed: the same seed gives the same ports, hence the
 * same placement. Below the kernel's ephemeral range, so that a killed
 * instance's port is not taken as the source port of some connection before
 * the instance restarts.
 */
export function basePortForSeed(seed: number): number {
  const slots = Math.floor((FREE_PORT_LAST - FREE_PORT_FIRST) / PORTS_PER_SEED);
  return FREE_PORT_FIRST + (seed % slots) * PORTS_PER_SEED;
}

/** Whether the ports a seed would use are free now. */
export function seedPortsFree(seed: number, servers = 6): boolean {
  const base = basePortForSeed(seed);
  for (let port = base; port < base + servers; port++) if (!portFree(port)) return false;
  return true;
}

function _sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function _fdCount(pid: number | "self"): number {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  } catch {
    return -1;
  }
}

/** Processes whose command line mentions `text` (our data directory). */
function _processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(text)) pids.push(Number(entry.name));
    } catch { /* gone */ }
  }
  return pids;
}

interface _Source {
  name: string;
  path: string;
  sha256: string;
}

/** One client: runs fetches (or uploads) back to back, resuming whatever the nemesis interrupts. */
class _Client {
  readonly index: number;
  readonly kind: "fetch" | "upload";
  current: { process: FtsProcess; interrupted: boolean } | undefined;
  completed = 0;
  resumed = 0;
  readonly uploaded: _Source[] = [];

  constructor(index: number, kind: "fetch" | "upload") {
    this.index = index;
    this.kind = kind;
  }

  interrupt(signal: Deno.Signal): boolean {
    if (!this.current) return false;
    this.current.interrupted = true;
    this.current.process.kill(signal);
    return true;
  }

  /**
   * Runs `args` until it succeeds; a run that fails without an interrupt is a
   * violation. After an interrupt, `retryArgs` are added to the next runs.
   */
  async runToCompletion(
    args: string[],
    violations: string[],
    what: string,
    retryArgs: string[] = [],
  ): Promise<boolean> {
    for (let run = 0;; run++) {
      const process = new FtsProcess(run === 0 ? args : [...args, ...retryArgs]);
      this.current = { process, interrupted: false };
      const timer = setTimeout(() => process.kill("SIGKILL"), RUN_TIMEOUT_MS);
      const result = await process.result();
      clearTimeout(timer);
      const interrupted = this.current.interrupted;
      this.current = undefined;
      if (result.code === 0) return true;
      if (interrupted) {
        this.resumed++;
        continue;
      }
      violations.push(
        `${what} failed with exit code ${result.code} within the fault budget: ${
          result.stderr.trim().split("\n").slice(-3).join(" | ")
        }`,
      );
      return false;
    }
  }
}

/** Runs the soak; the report's `violations` lists every broken invariant. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const seed = options.seed >>> 0;
  const servers = options.servers ?? 6;
  const replicas = options.replicas ?? 3;
  const fetchers = options.fetchers ?? 2;
  const uploaders = options.uploaders ?? 1;
  const durationMs = options.seconds * 1000;
  const random = seededRandom(seed);
  const violations: string[] = [];
  const selfFdsBefore = _fdCount("self");

  const basePort = basePortForSeed(seed);
  const ports = Array.from({ length: servers }, (_, i) => basePort + i);
  if (servers > PORTS_PER_SEED) throw new RangeError(`At most ${PORTS_PER_SEED} servers`);
  const busy = ports.filter((port) => !portFree(port));
  if (busy.length > 0) {
    throw new Error(`Ports ${busy.join(", ")} of seed ${seed} are in use; try another seed`);
  }
  const work = await tempDir("fts-soak-");
  const dir = join(work, "data");
  const common = ["--data", dir];
  log(
    `soak: seed ${seed}, ${options.seconds}s, ${servers} instances on ${basePort}+, R=${replicas}`,
  );

  // Files from the seed, preloaded.
  const sources: _Source[] = [];
  await Deno.mkdir(join(work, "src"));
  for (let i = 0; i < 3; i++) {
    const name = `soak-${i}.bin`;
    const path = join(work, "src", name);
    await writeRandomFile(path, randomInt(random, 1 * MiB, 3 * MiB), (seed + i) >>> 0);
    sources.push({ name, path, sha256: await sha256File(path) });
  }
  const preload = await runFts([
    "preload",
    ...sources.map((s) => s.path),
    ...common,
    "--servers",
    String(servers),
    "--base-port",
    String(basePort),
    "--replicas",
    String(replicas),
    "--part-size",
    "256KiB",
  ]);
  if (preload.code !== 0) throw new Error(`preload failed: ${preload.stderr}`);

  // The manifest, by instance index, is what the nemesis plans against.
  const manifest = await readManifestJson(dir);
  const parts: (PartHolders & { digest: string; source: _Source; offset: number })[] = [];
  for (const source of sources) {
    const entry = manifest.files[source.name]!;
    entry.parts.forEach((part, index) => {
      parts.push({
        size: part.size,
        holders: part.replicas.map((id) => ports.indexOf(Number(id))),
        digest: part.digest,
        source,
        offset: index * entry.partSize,
      });
    });
  }
  const clients = [
    ...Array.from({ length: fetchers }, (_, i) => new _Client(i, "fetch" as const)),
    ...Array.from({ length: uploaders }, (_, i) => new _Client(fetchers + i, "upload" as const)),
  ];
  const schedule = planNemesis(seed, durationMs, parts, replicas, clients.length);
  const scheduleDigest = _sha256(JSON.stringify(schedule));
  log(`soak: nemesis schedule of ${schedule.length} steps, digest ${scheduleDigest.slice(0, 16)}`);

  const supervisor = new FtsProcess([
    "cluster",
    ...common,
    // Healing off: the nemesis's budget is computed against the manifest as preloaded.
    "--heal-after",
    "0",
  ]);
  const counts: SoakReport["nemesis"] = { kill: 0, start: 0, corrupt: 0, restore: 0, interrupt: 0 };
  let fetches = 0;
  let uploads = 0;
  try {
    await supervisor.waitFor(/fts cluster: ready/, 60_000);
    const info = await runningSupervisor(dir);
    if (!info) throw new Error("The soak's cluster supervisor is not running");
    const pidOf = async (port: number) =>
      Number((await Deno.readTextFile(join(dir, "run", `${port}.pid`))).trim());
    const stateOf = async (port: number) =>
      ((await controlRequest(info, { op: "status" })).instances as Record<string, string>)[
        String(port)
      ];

    // Warm up (every instance serves once), then take the descriptor baselines.
    for (const source of sources) {
      const dest = join(work, `warm-${source.name}`);
      await Deno.mkdir(dest);
      const warm = await runFts(["fetch", source.name, dest, ...common]);
      if (warm.code !== 0) throw new Error(`warm-up fetch failed: ${warm.stderr}`);
      await Deno.remove(dest, { recursive: true });
    }
    const fdBaseline = new Map<number, { pid: number; fds: number }>();
    for (const port of ports) {
      const pid = await pidOf(port);
      fdBaseline.set(port, { pid, fds: _fdCount(pid) });
    }
    const supervisorFds = _fdCount(supervisor.pid);

    // The nemesis: follows the schedule; each step waits for the one before.
    const started = performance.now();
    const down = new Set<number>();
    const corrupt = new Set<string>();
    const restore = async (instance: number, part: number) => {
      const p = parts[part]!;
      const target = storedPartPath(dir, String(ports[instance]), p.digest);
      const bytes = new Uint8Array(p.size);
      const file = await Deno.open(p.source.path);
      try {
        await file.seek(p.offset, Deno.SeekMode.Start);
        let got = 0;
        while (got < bytes.length) got += (await file.read(bytes.subarray(got))) ?? 0;
      } finally {
        file.close();
      }
      // Atomic, as a repair would: a reader sees the bad copy or the good one.
      await Deno.writeFile(`${target}.nemesis`, bytes);
      await Deno.rename(`${target}.nemesis`, target);
      await Deno.remove(join(dir, "instances", String(ports[instance]), "quarantine", p.digest))
        .catch(() => {});
      corrupt.delete(`${instance}:${part}`);
    };
    const start = async (instance: number) => {
      const reply = await controlRequest(info, { op: "start", id: String(ports[instance]) });
      if (reply.ok !== true) throw new Error(`start ${ports[instance]}: ${reply.error}`);
      down.delete(instance);
    };
    const execute = async (action: NemesisAction) => {
      counts[action.type]++;
      switch (action.type) {
        case "kill": {
          const port = ports[action.instance]!;
          Deno.kill(await pidOf(port), "SIGKILL");
          down.add(action.instance);
          // The supervisor must have seen it go before a later start.
          for (let i = 0; i < 100 && (await stateOf(port)) !== "down"; i++) await _sleep(50);
          return;
        }
        case "start":
          return await start(action.instance);
        case "corrupt": {
          const p = parts[action.part]!;
          await damageFile(
            storedPartPath(dir, String(ports[action.instance]), p.digest),
            action.offset,
            16,
          );
          corrupt.add(`${action.instance}:${action.part}`);
          return;
        }
        case "restore":
          return await restore(action.instance, action.part);
        case "interrupt":
          clients[action.client]!.interrupt(action.signal);
          return;
      }
    };
    const nemesis = (async () => {
      for (const step of schedule) {
        await _sleep(started + step.atMs - performance.now());
        log(`soak: +${(step.atMs / 1000).toFixed(1)}s ${JSON.stringify(step.action)}`);
        await execute(step.action);
      }
      await _sleep(started + durationMs - performance.now());
    })();

    // The clients: until the time is up, one transfer after another.
    let stopping = false;
    const clientRuns = clients.map(async (client) => {
      const choose = seededRandom((seed + 1_000 + client.index) >>> 0);
      for (let n = 0; !stopping; n++) {
        if (client.kind === "fetch") {
          const source = pick(choose, sources);
          const dest = join(work, `c${client.index}-${n}`);
          await Deno.mkdir(dest);
          const args = ["fetch", source.name, dest, ...common, "--limit-rate", CLIENT_RATE];
          const what = `fetch of ${source.name} by client ${client.index}`;
          if (await client.runToCompletion(args, violations, what)) {
            fetches++;
            const got = await sha256File(join(dest, source.name));
            if (got !== source.sha256) violations.push(`${what} is not byte-identical`);
          }
          await Deno.remove(dest, { recursive: true });
        } else {
          const name = `up-${client.index}-${n}.bin`;
          const path = join(work, "src", name);
          await writeRandomFile(path, randomInt(choose, 200 * KiB, 1200 * KiB), (seed ^ n) >>> 0);
          const args = ["upload", path, "--as", name, "--operator", ...common];
          args.push("--limit-rate", CLIENT_RATE);
          // An upload interrupted after its publish went through has made the file: run
          // again it must replace it (with the same content, the server answers "unchanged").
          const again = ["--replace"];
          if (await client.runToCompletion(args, violations, `upload of ${name}`, again)) {
            uploads++;
            client.uploaded.push({ name, path, sha256: await sha256File(path) });
          }
        }
      }
    });
    await nemesis;
    stopping = true;

    // Heal: every instance up, every corrupted copy restored.
    for (const instance of [...down]) await start(instance);
    for (const key of [...corrupt]) {
      const [instance, part] = key.split(":").map(Number) as [number, number];
      await restore(instance, part);
    }
    log(`soak: time is up; nemesis healed, waiting for the clients`);
    await Promise.all(clientRuns);

    // Uploaded files come back byte-identical.
    for (const source of clients.flatMap((c) => c.uploaded)) {
      const dest = join(work, `check-${source.name}`);
      await Deno.mkdir(dest);
      const result = await runFts(["fetch", source.name, dest, ...common]);
      if (result.code !== 0) {
        violations.push(`uploaded ${source.name} cannot be fetched: ${result.stderr.trim()}`);
      } else if ((await sha256File(join(dest, source.name))) !== source.sha256) {
        violations.push(`uploaded ${source.name} came back different`);
      }
      await Deno.remove(dest, { recursive: true });
    }

    // The manifest matches the stored parts: every listed copy is there and good.
    const final = await readManifestJson(dir);
    for (const entry of Object.values(final.files)) {
      for (const [index, part] of entry.parts.entries()) {
        for (const id of part.replicas) {
          const path = storedPartPath(dir, id, part.digest);
          let digest: string | undefined;
          try {
            digest = await sha256File(path);
          } catch { /* missing */ }
          if (digest !== part.digest) {
            violations.push(
              `part ${index} of ${entry.name} on instance ${id} is ${
                digest === undefined ? "missing" : "corrupt"
              }`,
            );
          }
        }
      }
    }
    for (const port of ports) {
      for (const sub of ["tmp", "quarantine"]) {
        const left = [...Deno.readDirSync(join(dir, "instances", String(port), sub))];
        if (left.length > 0) {
          violations.push(`instance ${port} has ${left.length} files left in ${sub}/`);
        }
      }
    }

    // No descriptor leaked: idle instances hold what they held after the warm-up.
    await _sleep(1_000);
    const baselines = [...fdBaseline.values()].map((b) => b.fds);
    const now: number[] = [];
    for (const port of ports) {
      const pid = await pidOf(port);
      const base = fdBaseline.get(port)!;
      // A restarted instance is a new process: hold it to the highest baseline.
      const limit = (pid === base.pid ? base.fds : Math.max(...baselines)) + FD_SLACK;
      const fds = _fdCount(pid);
      now.push(fds);
      if (fds > limit) {
        violations.push(`instance ${port} holds ${fds} descriptors (limit ${limit})`);
      }
    }
    const supervisorNow = _fdCount(supervisor.pid);
    log(
      `soak: descriptors after warm-up -> at the end: instances ${baselines.join(",")} -> ${
        now.join(",")
      }, supervisor ${supervisorFds} -> ${supervisorNow}`,
    );
    if (supervisorNow > supervisorFds + FD_SLACK) {
      violations.push(`the supervisor holds ${supervisorNow} descriptors, ${supervisorFds} before`);
    }
  } finally {
    supervisor.kill("SIGTERM");
    await supervisor.status;
  }
  // No stray process: nothing still runs with our data directory.
  for (let i = 0; i < 50 && _processesMentioning(dir).length > 0; i++) await _sleep(100);
  const strays = _processesMentioning(dir);
  if (strays.length > 0) {
    violations.push(`processes left running: ${strays.join(", ")}`);
    for (const pid of strays) {
      try {
        if (processAlive(pid)) Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  await Deno.remove(work, { recursive: true }).catch(() => {});
  const selfFdsAfter = _fdCount("self");
  if (options.checkOwnDescriptors !== false && selfFdsAfter > selfFdsBefore + FD_SLACK) {
    violations.push(`the soak itself holds ${selfFdsAfter} descriptors, ${selfFdsBefore} before`);
  }
  const resumed = clients.reduce((sum, c) => sum + c.resumed, 0);
  return { seed, scheduleDigest, nemesis: counts, fetches, uploads, resumed, violations };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string" }, seed: { type: "string" } },
    strict: true,
  });
  const seconds = Number(values.seconds ?? 60);
  const seed = values.seed === undefined ? newSeed() : Number(values.seed);
  if (!Number.isFinite(seconds) || seconds <= 0 || !Number.isInteger(seed) || seed < 0) {
    console.error("usage: deno task soak [--seconds 60] [--seed N]");
    Deno.exit(2);
  }
  console.log(
    `soak: seed ${seed} (replay with: deno task soak --seconds ${seconds} --seed ${seed})`,
  );
  const report = await runSoak({ seconds, seed, log: (line) => console.log(line) });
  console.log(
    `soak: seed ${seed}: ${report.fetches} fetches and ${report.uploads} uploads verified, ` +
      `${report.resumed} interrupted runs resumed; nemesis ${JSON.stringify(report.nemesis)}`,
  );
  if (report.violations.length > 0) {
    console.error(`soak: FAILED (seed ${seed}):\n  ${report.violations.join("\n  ")}`);
    Deno.exit(1);
  }
  console.log("soak: ok: every transfer byte-identical, manifest consistent, nothing leaked");
}
