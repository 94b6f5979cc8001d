/**
 * Watching a cluster: successive status reports become snapshots (each
 * instance up, down, starting or busy, with its send and receive rates) and
 * the events between two snapshots (an instance going down while it served
 * clients, parts stored by a repair, bad copies reported and quarantined, a
 * file's replication health changing). The live view draws these.
 */
import { sleep } from "../base/sleep.ts";
import { type ClusterConfig } from "../state/config.ts";
import { type HealStatus } from "../ops/heal.ts";
import { clusterStatus, type StatusReport } from "../ops/status.ts";
import { type TlsClientOptions } from "../wire/tls.ts";
import { formatBytes, plural } from "../base/units.ts";
import { printable } from "../base/printable.ts";

/** How often the watch asks every instance for its counters. */
export const DEFAULT_WATCH_INTERVAL_MS = 1_000;
/**
 * An instance counts as busy for this long after it last sent or stored
 * bytes: rate-limited clients read in bursts, and a busy grid should not blink.
 */
export const BUSY_HOLD_MS = 2_000;

/** `fail`: up, but serving no parts (its store unreadable, its disk stalled: `problem` says). */
export type InstanceState = "up" | "busy" | "down" | "starting" | "fail";

export interface InstanceView {
  id: string;
  state: InstanceState;
  /** Client connections open now (the watch's own probe is not counted). */
  connections: number;
  bytesOutPerSecond: number;
  bytesInPerSecond: number;
  /** Date.now() when it was last seen sending or storing bytes. */
  lastBusyAt?: number;
  /** The instance's counters as last seen (zeroes when it is down). */
  counters: Record<string, number>;
  /** Why it serves no parts, as it says (state `fail`). */
  problem?: string;
}

/**
 * "unknown" when no instance answers: the cluster is not running, and its
 * files' parts are on disk, not lost.
 */
export type FileHealth = "healthy" | "degraded" | "lost" | "unknown";

/** A file's line of the status report, with its health in one word. */
export type FileView =
  & Pick<
    StatusReport["files"][number],
    "name" | "size" | "parts" | "minLiveReplicas" | "underReplicatedParts" | "lostParts"
  >
  & { health: FileHealth };

export interface WatchSnapshot {
  /** Date.now() when the report was taken. */
  at: number;
  replicas: number;
  instances: InstanceView[];
  files: FileView[];
  healing: HealStatus | null;
  /** Whether any instance answers (or is starting): false for a cluster that is not running. */
  running: boolean;
}

export type EventLevel = "info" | "good" | "warn" | "bad";

export interface WatchEvent {
  at: number;
  level: EventLevel;
  text: string;
}

function _health(f: StatusReport["files"][number], replicas: number): FileHealth {
  if (f.lostParts > 0) return "lost";
  return f.minLiveReplicas < replicas ? "degraded" : "healthy";
}

/**
 * Turns a status report into a snapshot. Rates come from the counters'
 * growth since `previous`; `states` (from a supervisor) says which instances
 * are still starting and overrides what the probes saw for up and down.
 */
export function toSnapshot(
  report: StatusReport,
  at: number,
  previous?: WatchSnapshot,
  states?: Record<string, "starting" | "up" | "down">,
): WatchSnapshot {
  const before = new Map(previous?.instances.map((i) => [i.id, i]));
  const seconds = previous ? Math.max(0.001, (at - previous.at) / 1000) : 0;
  const instances = report.instances.map((probe): InstanceView => {
    const counters = probe.up ? probe.counters ?? {} : {};
    const old = before.get(probe.id);
    const grew = (key: string) => {
      const now = counters[key] ?? 0;
      const then = old?.counters[key];
      // A restarted instance starts its counters at zero again.
      return then === undefined || now < then ? 0 : now - then;
    };
    const out = seconds > 0 ? grew("bytesServed") / seconds : 0;
    const inbound = seconds > 0 ? grew("bytesStored") / seconds : 0;
    const lastBusyAt = out > 0 || inbound > 0 ? at : probe.up ? old?.lastBusyAt : undefined;
    // Refusing connections (BUSY) is the busiest an instance gets.
    const busy = probe.busy === true ||
      (lastBusyAt !== undefined && at - lastBusyAt <= BUSY_HOLD_MS);
    const supervised = states?.[probe.id];
    let state: InstanceState = !probe.up
      ? "down"
      : probe.storeError !== undefined
      ? "fail"
      : busy
      ? "busy"
      : "up";
    if (supervised === "starting" && !probe.up) state = "starting";
    if (supervised === "down") state = "down";
    return {
      id: probe.id,
      state,
      // The probe that asked is itself one open connection.
      connections: Math.max(0, (counters.activeConnections ?? 1) - 1),
      bytesOutPerSecond: out,
      bytesInPerSecond: inbound,
      ...(lastBusyAt !== undefined ? { lastBusyAt } : {}),
      counters,
      ...(probe.storeError !== undefined ? { problem: probe.storeError } : {}),
    };
  });
  const running = instances.some((instance) => instance.state !== "down");
  return {
    at,
    replicas: report.replicas,
    instances,
    running,
    files: report.files.map((f) => ({
      name: f.name,
      size: f.size,
      parts: f.parts,
      minLiveReplicas: f.minLiveReplicas,
      underReplicatedParts: f.underReplicatedParts,
      lostParts: f.lostParts,
      health: running ? _health(f, report.replicas) : "unknown",
    })),
    healing: report.healing ?? null,
  };
}

/** Supervisor states during start-up: an instance not up yet is starting, not down. */
export function startingUnlessUp(
  states: Record<string, "starting" | "up" | "down">,
): Record<string, "starting" | "up" | "down"> {
  return Object.fromEntries(
    Object.entries(states).map(([id, state]) => [id, state === "up" ? "up" : "starting"]),
  );
}

/**
 * What happened between two snapshots. `upDown: false` leaves instances
 * going down and up to a supervisor that reports them itself.
 */
export function snapshotEvents(
  previous: WatchSnapshot | undefined,
  next: WatchSnapshot,
  options: { upDown?: boolean } = {},
): WatchEvent[] {
  if (!previous) return [];
  const events: WatchEvent[] = [];
  const at = next.at;
  const say = (level: EventLevel, text: string) => events.push({ at, level, text });
  const before = new Map(previous.instances.map((i) => [i.id, i]));
  const storedOn: string[] = [];
  let partsStored = 0;
  let bytesStored = 0;
  for (const now of next.instances) {
    const then = before.get(now.id);
    if (!then) continue;
    const wasUp = _answers(then.state);
    const isUp = _answers(now.state);
    if (isUp && then.state !== "fail" && now.state === "fail") {
      say("bad", `${now.id} up but serving no parts: ${printable(now.problem ?? "")}`);
    } else if (wasUp && isUp && then.state === "fail" && now.state !== "fail") {
      say("good", `${now.id} serves its parts again`);
    }
    if (wasUp && !isUp) {
      if (then.connections > 0 || then.state === "busy") {
        say(
          "bad",
          `${now.id} went down with ${
            plural(then.connections, "client connection")
          } open: transfers in flight continue from other replicas`,
        );
      } else if (options.upDown !== false) {
        say("bad", `${now.id} down`);
      }
    } else if (!wasUp && isUp && options.upDown !== false) {
      say("good", `${now.id} up`);
    }
    if (!wasUp || !isUp) continue;
    const grew = (key: string) => Math.max(0, (now.counters[key] ?? 0) - (then.counters[key] ?? 0));
    const stored = grew("partsStored");
    if (stored > 0) {
      storedOn.push(now.id);
      partsStored += stored;
      bytesStored += grew("bytesStored");
    }
    const reports = grew("reportsReceived");
    if (reports > 0) {
      say(
        "warn",
        `${now.id} was told of ${
          plural(reports, "bad copy", "bad copies")
        } by clients (digest mismatch); they refetched elsewhere`,
      );
    }
    const quarantined = grew("quarantined");
    if (quarantined > 0) {
      say(
        "warn",
        `${now.id} quarantined ${plural(quarantined, "corrupt copy", "corrupt copies")}`,
      );
    }
    const refused = grew("refusedConnections");
    if (refused > 0) {
      say("warn", `${now.id} refused ${plural(refused, "connection")}: at its connection limit`);
    }
  }
  if (partsStored > 0) {
    // One line for the lot: a repair writes to many instances at once.
    say(
      "good",
      `${plural(partsStored, "part copy", "part copies")} stored (${formatBytes(bytesStored)}) on ${
        storedOn.join(", ")
      }: a repair or an upload`,
    );
  }
  // A stopped cluster loses nothing: one line, not a LOST line for every file.
  if (previous.running && !next.running) {
    say("warn", "no instance answers: the cluster stopped (its files are on disk, not lost)");
  }
  // While instances are still starting, health says nothing yet.
  const starting = [previous, next].some((s) => s.instances.some((i) => i.state === "starting"));
  const files = new Map(starting ? [] : previous.files.map((f) => [f.name, f]));
  for (const f of next.files) {
    const then = files.get(f.name);
    // Unknown on either side (no instance answered): no change to tell, only a new start.
    if (!then || then.health === f.health || [then.health, f.health].includes("unknown")) continue;
    if (f.health === "healthy") {
      say(
        "good",
        `${printable(f.name)} healthy again: every part has ${next.replicas} live replicas`,
      );
    } else if (f.health === "degraded") {
      say(
        "warn",
        `${printable(f.name)} degraded: ${
          plural(f.underReplicatedParts, "part")
        } below R=${next.replicas} (fewest live replicas ${f.minLiveReplicas})`,
      );
    } else {
      say("bad", `${printable(f.name)} LOST: ${plural(f.lostParts, "part")} with no live replica`);
    }
  }
  events.push(..._healEvents(previous.healing, next.healing, at));
  return events;
}

function _healEvents(
  before: HealStatus | null,
  now: HealStatus | null,
  at: number,
): WatchEvent[] {
  if (!now) return [];
  const events: WatchEvent[] = [];
  if (now.running && now.running.startedAt !== before?.running?.startedAt) {
    events.push({ at, level: "info", text: `repair started: ${now.running.reason}` });
  }
  if (now.last && now.last.finishedAt !== before?.last?.finishedAt) {
    const l = now.last;
    events.push(
      l.error ? { at, level: "bad", text: `repair failed: ${l.error}` } : {
        at,
        level: l.lost > 0 ? "bad" : l.short > 0 ? "warn" : "good",
        text:
          `repair done: ${plural(l.copied, "copy", "copies")} made (${
            formatBytes(l.bytesCopied)
          }), ${l.dropped} surplus dropped` +
          (l.short > 0 ? `, ${plural(l.short, "part")} short of R` : "") +
          (l.lost > 0 ? `, ${plural(l.lost, "part")} lost` : ""),
      },
    );
  }
  return events;
}

export interface WatchOptions {
  intervalMs?: number;
  signal?: AbortSignal;
  /** Supervisor states, when the watch runs inside `fts cluster`. */
  states?: () => Record<string, "starting" | "up" | "down">;
  upDown?: boolean;
  tls?: TlsClientOptions | undefined;
  /**
   * Called with a poll that failed (a TLS handshake refused, say), after
   * which the watch polls on; without it, the failure ends the watch.
   */
  onError?: (error: Error) => void;
}

/** Polls the cluster until `signal` aborts, yielding each snapshot and its events. */
export async function* watchCluster(
  dir: string,
  config: ClusterConfig,
  options: WatchOptions = {},
): AsyncGenerator<{ snapshot: WatchSnapshot; events: WatchEvent[] }> {
  const intervalMs = options.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  let previous: WatchSnapshot | undefined;
  while (!options.signal?.aborted) {
    const started = Date.now();
    // States from before the probes: an instance that came up meanwhile was still starting.
    const states = options.states?.();
    let report: StatusReport;
    try {
      report = await clusterStatus(dir, config, { tls: options.tls });
    } catch (error) {
      if (options.onError === undefined || options.signal?.aborted) throw error;
      options.onError(error instanceof Error ? error : new Error(String(error)));
      await sleep(Math.max(0, intervalMs - (Date.now() - started)), options.signal);
      continue;
    }
    const snapshot = toSnapshot(report, Date.now(), previous, states);
    const events = snapshotEvents(previous, snapshot, { upDown: options.upDown ?? true });
    previous = snapshot;
    yield { snapshot, events };
    const wait = Math.max(0, intervalMs - (Date.now() - started));
    await sleep(wait, options.signal);
  }
}

/** Whether an instance in `state` answers: failing is up (it is said on its own). */
function _answers(state: InstanceState): boolean {
  return state === "up" || state === "busy" || state === "fail";
}
