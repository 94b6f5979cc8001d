/**
 * `fts demo`: the whole system in well under a minute, for a newcomer on a
 * fresh clone. It makes a sample file, preloads it into a temporary data
 * directory, starts a cluster on free loopback ports, fetches with two
 * clients while killing the instances that serve them, interrupts a fetch
 * and resumes it, checks every byte, and cleans up: processes and temporary
 * files, on success, on failure and on Ctrl-C.
 *
 * Every step runs the real `fts` command (shown with a `$`), so what the demo
 * does is what a person can type.
 */
import { createHash } from "node:crypto";
import { probeInstances } from "./instances.ts";
import { loadFetchState } from "../client/fetch_state.ts";
import { FtsChild } from "./fts_child.ts";
import { join } from "../base/paths.ts";
import { findFreePortRange } from "../base/ports.ts";
import { hashInto } from "../state/store.ts";
import { paint } from "../base/terminal.ts";
import { formatBytes, formatDuration, plural } from "../base/units.ts";

export interface DemoOptions {
  sizeBytes: number;
  servers: number;
  replicas: number;
  partSize: number;
  /** Each instance sends at most this many bytes per second, so kills land mid-transfer. */
  instanceRateBytesPerSecond: number;
  /** Keep the temporary directory (to look at it) instead of removing it. */
  keep: boolean;
  color: boolean;
  signal: AbortSignal;
  say: (line: string) => void;
}

export const DEFAULT_DEMO: Omit<DemoOptions, "keep" | "color" | "signal" | "say"> = {
  sizeBytes: 24 * 1024 * 1024,
  servers: 10,
  replicas: 3,
  partSize: 2 * 1024 * 1024,
  instanceRateBytesPerSecond: 2 * 1024 * 1024,
};

/** How long the cluster may take to say ready. */
const CLUSTER_READY_TIMEOUT_MS = 60_000;
/** Between two looks at which instances are sending. */
const BUSY_LOOK_MS = 300;
/** The interrupted fetch is stopped once this share of its parts is verified. */
const INTERRUPT_AT_SHARE = 0.4;
/**
 * The interrupted fetch's own --limit-rate, half what its instances could
 * send it, so that it cannot end before the demo sees the share above
 * recorded: its control file is saved once a second, and on a busy machine
 * an unlimited fetch of the default 24 MiB could end within a second of
 * the save that first recorded 5 parts of 12.
 */
const INTERRUPTED_RATE_SHARE = 0.5;
/** A step that takes longer than this has gone wrong. */
const STEP_TIMEOUT_MS = 60_000;
/** Fetch parts at once per client. */
const CLIENT_PARALLEL = 4;

interface FetchSummary {
  partsPresent: number;
  partsFetched: number;
  bytesReceived: number;
  failovers: number;
  elapsedMs: number;
}

interface FailoverEvent {
  type: "failover";
  part: number;
  from: string;
  at: number;
  reason: string;
}

function _sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves with `promise`, or rejects as soon as `signal` aborts. */
function _orAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

async function _writeSample(path: string, size: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    // getRandomValues fills at most 64 KiB at a time.
    const chunk = new Uint8Array(65_536);
    for (let written = 0; written < size; written += chunk.length) {
      const n = Math.min(chunk.length, size - written);
      crypto.getRandomValues(chunk.subarray(0, n));
      let done = 0;
      while (done < n) done += await file.write(chunk.subarray(done, n));
    }
  } finally {
    file.close();
  }
}

async function _sha256(path: string): Promise<string> {
  const file = await Deno.open(path, { read: true });
  try {
    const hash = createHash("sha256");
    await hashInto(hash, file);
    return hash.digest("hex");
  } finally {
    file.close();
  }
}

function _failovers(stderr: string): FailoverEvent[] {
  return stderr.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      const event = JSON.parse(line) as { type?: unknown };
      return event.type === "failover" ? [event as FailoverEvent] : [];
    } catch {
      return [];
    }
  });
}

/** Runs the demo; throws on failure (after cleaning up) and on abort (AbortError). */
export async function runDemo(options: DemoOptions): Promise<void> {
  const { say, signal, color } = options;
  const step = (n: number, text: string) => say(`\n${paint(`${n}. ${text}`, "bold", color)}`);
  const cmd = (text: string) => say(`   ${paint(`$ ${text}`, "cyan", color)}`);
  const ok = (text: string) => paint(text, "green", color);
  const started = performance.now();

  const work = await Deno.makeTempDir({ prefix: "fts-demo-" });
  const data = join(work, "data");
  const sample = join(work, "sample.bin");
  const children = new Set<FtsChild>();
  const spawn = (args: string[]) => {
    const child = new FtsChild([...args]);
    children.add(child);
    void child.status.then(() => children.delete(child));
    return child;
  };
  const run = async (args: string[]) => await _orAbort(spawn(args).success(), signal);
  let cluster: FtsChild | undefined;
  const basePort = findFreePortRange(options.servers);
  const lastPort = basePort + options.servers - 1;
  const ids = Array.from({ length: options.servers }, (_, i) => String(basePort + i));

  say(
    paint("fts demo", "bold", color) +
      ": a cluster on this machine, clients fetching while instances die, and a resume.",
  );
  say(
    `   (working in ${work}, ports ${basePort}-${lastPort}; ${
      options.keep ? "kept at the end (--keep)" : "all of it is removed at the end"
    })`,
  );
  try {
    // 1. The sample file.
    step(1, `A sample file: ${formatBytes(options.sizeBytes)} of random bytes`);
    await _writeSample(sample, options.sizeBytes);
    const digest = await _sha256(sample);
    say(`   sha256 ${digest.slice(0, 16)}...`);

    // 2. Preload.
    const parts = Math.ceil(options.sizeBytes / options.partSize);
    step(
      2,
      `Preload it: ${parts} parts of ${
        formatBytes(options.partSize)
      }, each stored on ${options.replicas} of ${options.servers} instances`,
    );
    cmd(
      `fts preload sample.bin --servers ${options.servers} --replicas ${options.replicas} --part-size ${
        sizeArg(options.partSize)
      }`,
    );
    await run([
      "preload",
      sample,
      "--data",
      data,
      "--servers",
      String(options.servers),
      "--base-port",
      String(basePort),
      "--replicas",
      String(options.replicas),
      "--part-size",
      sizeArg(options.partSize),
      "--quiet",
    ]);

    // 3. The cluster.
    step(3, `Start the cluster: ${options.servers} instances, each its own process`);
    cmd(`fts cluster --limit-rate ${sizeArg(options.instanceRateBytesPerSecond)}`);
    say(`   (each instance sends at most that much, so there is time to kill some mid-transfer)`);
    const clusterStarted = performance.now();
    cluster = spawn([
      "cluster",
      "--data",
      data,
      "--plain",
      "--limit-rate",
      sizeArg(options.instanceRateBytesPerSecond),
    ]);
    await _orAbort(cluster.waitFor(/fts cluster: ready/, CLUSTER_READY_TIMEOUT_MS), signal);
    say(
      `   ${ok("ready")}: ${options.servers} instances on 127.0.0.1:${basePort}-${lastPort} in ${
        formatDuration(performance.now() - clusterStarted)
      }`,
    );

    // 4. Two clients, and kills.
    const kills = options.replicas - 1;
    step(
      4,
      `Two clients fetch it at once; ${kills} instances that are sending to them get killed`,
    );
    cmd("fts fetch sample.bin client-1/  &  fts fetch sample.bin client-2/");
    const dests = [1, 2].map((i) => join(work, `client-${i}`));
    for (const dest of dests) await Deno.mkdir(dest);
    const fetchStarted = performance.now();
    const seconds = () => `${((performance.now() - fetchStarted) / 1000).toFixed(1)} s`.padStart(6);
    const clients = dests.map((dest) =>
      spawn([
        "fetch",
        "sample.bin",
        dest,
        "--data",
        data,
        "--json",
        "--parallel",
        String(CLIENT_PARALLEL),
      ])
    );
    const killed = await _killBusy(ids, kills, clients, {
      signal,
      run: (args) => run([...args, "--data", data]),
      say: (id, served) =>
        say(
          `   ${seconds()}  ${paint(`fts kill ${id}`, "red", color)}  (it was sending: ${
            formatBytes(served)
          } so far)`,
        ),
    });
    const results: FetchSummary[] = [];
    for (const [i, client] of clients.entries()) {
      const summary = JSON.parse(await _orAbort(client.success(), signal)) as FetchSummary;
      results.push(summary);
      const midPart = _failovers(client.stderr).filter((e) => e.at > 0);
      say(
        `   client ${i + 1}: ${ok("done")} in ${
          formatDuration(summary.elapsedMs)
        }, ${summary.partsFetched} parts verified, ${
          plural(summary.failovers, "failover")
        }, ${midPart.length} of them mid-part`,
      );
      const first = midPart[0];
      if (first) {
        say(
          `             e.g. part ${first.part}: instance ${first.from} died ${
            formatBytes(first.at)
          } into it; another replica sent the rest`,
        );
      }
    }
    if (killed.length > 0) {
      say(
        `   killed ${
          killed.join(" and ")
        }: with R=${options.replicas}, every part kept a live copy`,
      );
    }

    // 5. Bring them back.
    if (killed.length > 0) {
      step(5, `Bring the killed instances back`);
      cmd(killed.map((id) => `fts start ${id}`).join(" && "));
      for (const id of killed) await run(["start", id, "--data", data]);
      say(`   ${ok("up again")}: ${killed.join(", ")}`);
    } else {
      step(5, "No instance was caught sending (a very fast machine): nothing to bring back");
    }

    // 6. Interrupt and resume.
    step(6, "Interrupt a fetch (as Ctrl-C would), then run the same command again");
    const dest3 = join(work, "client-3");
    await Deno.mkdir(dest3);
    const rate = sizeArg(
      Math.ceil(
        options.instanceRateBytesPerSecond * CLIENT_PARALLEL * INTERRUPTED_RATE_SHARE,
      ),
    );
    cmd(`fts fetch sample.bin client-3/ --limit-rate ${rate}      ^C`);
    const interrupted = spawn([
      "fetch",
      "sample.bin",
      dest3,
      "--data",
      data,
      "--json",
      "--limit-rate",
      rate,
    ]);
    const verified = await _waitForVerified(
      join(dest3, "sample.bin.fts-state"),
      Math.ceil(parts * INTERRUPT_AT_SHARE),
      interrupted,
      signal,
    );
    interrupted.signal("SIGINT");
    const code = (await _orAbort(interrupted.status, signal)).code;
    say(
      `   interrupted (exit ${code}) with ${verified} of ${parts} parts verified on disk`,
    );
    cmd("fts fetch sample.bin client-3/");
    const resumed = JSON.parse(
      await run(["fetch", "sample.bin", dest3, "--data", data, "--json"]),
    ) as FetchSummary;
    results.push(resumed);
    say(
      `   resumed: ${
        ok(`${resumed.partsPresent} parts were already there`)
      }, ${resumed.partsFetched} fetched (${
        formatBytes(resumed.bytesReceived)
      } crossed the network, not ${formatBytes(options.sizeBytes)})`,
    );

    // 7. Check every byte.
    step(7, "Check every byte against the original");
    const copies = [...dests, dest3].map((dest) => join(dest, "sample.bin"));
    for (const [i, copy] of copies.entries()) {
      const copyDigest = await _sha256(copy);
      if (copyDigest !== digest) {
        throw new Error(`Client ${i + 1}'s copy differs from the original: sha256 ${copyDigest}`);
      }
    }
    say(
      `   ${ok("all 3 copies match")}: sha256 ${digest.slice(0, 16)}... (${
        formatBytes(options.sizeBytes)
      } each)`,
    );
    const failovers = results.reduce((n, r) => n + r.failovers, 0);
    say(
      `\n${paint("Done", "bold", color)} in ${
        formatDuration(performance.now() - started)
      }: ${killed.length} instances killed, ${failovers} failovers, 1 resume, every byte checked out.`,
    );
  } finally {
    await _cleanUp(cluster, children, work, options.keep, say);
  }
  say(
    "Next: ./fts preload FILE && ./fts cluster   then in another terminal   ./fts fetch FILE DIR",
  );
}

/**
 * Kills up to `count` instances, each while it is sending, spread over the
 * clients' run; returns their ids. Stops early once the clients are done.
 */
async function _killBusy(
  ids: string[],
  count: number,
  clients: FtsChild[],
  context: {
    signal: AbortSignal;
    run: (args: string[]) => Promise<string>;
    say: (id: string, served: number) => void;
  },
): Promise<string[]> {
  const killed: string[] = [];
  const addresses = ids.map((id) => ({ id, address: `127.0.0.1:${id}` }));
  const served = async () =>
    new Map(
      (await probeInstances(addresses.filter((a) => !killed.includes(a.id)), 1_000)).map((p) => [
        p.id,
        typeof p.stats?.bytesServed === "number" ? p.stats.bytesServed : -1,
      ]),
    );
  let before = await served();
  while (killed.length < count && clients.some((c) => !c.exited)) {
    await _sleep(BUSY_LOOK_MS, context.signal);
    const after = await served();
    const busy = [...after].filter(([id, bytes]) => bytes > (before.get(id) ?? Infinity));
    before = after;
    const target = busy[0];
    if (!target) continue;
    context.say(target[0], target[1]);
    await context.run(["kill", target[0]]);
    killed.push(target[0]);
    await _sleep(BUSY_LOOK_MS * 2, context.signal);
    before = await served();
  }
  return killed;
}

/** Waits until the control file records at least `parts` verified parts; returns the count. */
async function _waitForVerified(
  statePath: string,
  parts: number,
  fetch: FtsChild,
  signal: AbortSignal,
): Promise<number> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const state = await loadFetchState(statePath).catch(() => undefined);
    const count = state?.verified.count() ?? 0;
    if (count >= parts) return count;
    if (fetch.exited) {
      throw new Error("The fetch to interrupt finished before it could be interrupted");
    }
    await _sleep(100, signal);
  }
  throw new Error(`The fetch to interrupt did not verify ${parts} parts in time`);
}

async function _cleanUp(
  cluster: FtsChild | undefined,
  children: Set<FtsChild>,
  work: string,
  keep: boolean,
  say: (line: string) => void,
): Promise<void> {
  // The cluster stops its instances on SIGTERM; anything else just ends.
  cluster?.signal("SIGTERM");
  for (const child of children) if (child !== cluster) child.signal("SIGKILL");
  const grace = setTimeout(() => cluster?.signal("SIGKILL"), 10_000);
  await Promise.allSettled([...children].map((c) => c.status));
  clearTimeout(grace);
  if (keep) {
    say(`Cleaned up: cluster stopped; kept ${work} (--keep)`);
    return;
  }
  await Deno.remove(work, { recursive: true }).catch(() => {});
  say(`Cleaned up: cluster stopped, ${work} removed.`);
}

/** A size as a person would type it: 2MiB, 512KiB, or bytes. */
export function sizeArg(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return String(bytes);
}
