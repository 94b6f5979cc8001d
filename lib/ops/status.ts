/** What `fts status` reports: instances up or down, and each file's replica health. */
import { type ClusterConfig } from "../state/config.ts";
import { type ClusterView, configView } from "../state/cluster_view.ts";
import { type HealStatus } from "./heal.ts";
import { controlRequest, probeInstances, runningSupervisor } from "./instances.ts";
import { type FileEntry } from "../state/manifest.ts";
import { allEntries, type ManifestStore, walkWhole } from "../state/manifest_store.ts";
import { openManifestStore } from "../state/open_manifest_store.ts";
import { requireManifestIfParts } from "../state/manifest_guard.ts";
import { storesOnHost, untouchedCopies } from "../state/part_gc.ts";
import { DEFAULT_UNUSED_AFTER_MS } from "./repair_options.ts";
import { preferredTlsError, type TlsClientOptions } from "../wire/tls.ts";
import { withPeer } from "../client/peer.ts";

export interface StatusReport {
  replicas: number;
  instances: {
    id: string;
    address: string;
    up: boolean;
    /** Up, but it refused the probe with BUSY: every connection slot is taken. */
    busy?: boolean;
    /** Up, but it cannot serve its parts (store unreadable, disk stalled): why, as it says. */
    storeError?: string;
    partsServed?: number;
    bytesServed?: number;
    /** Every numeric counter the instance's stats op returned (lib/server/server.ts ServerCounters). */
    counters?: Record<string, number>;
  }[];
  files: {
    name: string;
    size: number;
    parts: number;
    /** The fewest live replicas any part of the file has. */
    minLiveReplicas: number;
    /** Parts with fewer than R live replicas, and with none. */
    underReplicatedParts: number;
    lostParts: number;
    /** Part numbers with fewer than R live replicas, and with none. */
    underReplicatedPartNumbers: number[];
    lostPartNumbers: number[];
  }[];
  /**
   * Whether a cluster supervisor runs for this data directory; null without
   * one (a cluster in etcd asked from anywhere: the elected host heals).
   */
  supervisor: boolean | null;
  /** In etcd: the host elected to heal for the cluster (its lock's holder); null: none now. */
  healer?: string | null;
  /** What the supervisor's healing is doing; null when off or no supervisor runs. */
  healing: HealStatus | null;
  /** The supervisor runs but did not answer (stopped, hung): its healing is unknown. */
  supervisorSilent?: true;
  /**
   * Parts the instances list that no file uses (left by deletes interrupted
   * midway, uploads never published), when copies were checked: their
   * copies and bytes, and how many have a copy on this host touched within
   * unusedAfterMs (not deletable yet; undefined without a data directory).
   */
  unused?: {
    parts: number;
    copies: number;
    bytes: number;
    young: number | undefined;
    unusedAfterMs: number;
  };
}

export interface StatusOptions {
  tls?: TlsClientOptions | undefined;
  /**
   * Ask every instance that is up which parts it stores (part.list), and
   * count a copy as live only if listed; else a copy counts as live when its
   * instance answers. One list per instance: for a one-off status, not a
   * view that refreshes every second.
   */
  checkCopies?: boolean;
}

/** How long status waits for the supervisor to say what healing is doing. */
const HEAL_STATUS_TIMEOUT_MS = 2_000;
/** How long one instance may take to send its part list, when status checks copies. */
const PART_LIST_TIMEOUT_MS = 10_000;

/**
 * The parts each instance says it stores (part.list), by instance id; an
 * instance that does not say is absent: none of its copies has evidence.
 */
async function _heldParts(
  probes: readonly { id: string; address: string; up: boolean }[],
  tls: TlsClientOptions | undefined,
): Promise<Map<string, ReadonlyMap<string, number>>> {
  const held = new Map<string, ReadonlyMap<string, number>>();
  await Promise.all(
    probes.filter((p) => p.up).map(async ({ id, address }) => {
      const options = {
        connectTimeoutMs: PART_LIST_TIMEOUT_MS,
        stallTimeoutMs: PART_LIST_TIMEOUT_MS,
        tls,
      };
      try {
        const { parts } = await withPeer(address, options, (peer) => peer.listParts());
        held.set(id, parts);
      } catch {
        // No list, no evidence: its copies do not count as live.
      }
    }),
  );
  return held;
}

async function _healStatus(
  dir: string,
): Promise<{ supervisor: boolean; healing: HealStatus | null; supervisorSilent?: true }> {
  const info = await runningSupervisor(dir);
  if (!info) return { supervisor: false, healing: null };
  try {
    const reply = await controlRequest(info, { op: "heal" }, HEAL_STATUS_TIMEOUT_MS);
    const heal = reply.ok === true ? reply.heal : null;
    return {
      supervisor: true,
      healing: typeof heal === "object" && heal !== null ? heal as HealStatus : null,
    };
  } catch {
    return { supervisor: true, healing: null, supervisorSilent: true };
  }
}

/** The status of the single-host cluster in `dir`. */
export async function clusterStatus(
  dir: string,
  config: ClusterConfig,
  options: StatusOptions = {},
): Promise<StatusReport> {
  await requireManifestIfParts(dir, () => storesOnHost(dir));
  return await statusOf({ view: configView(config), store: openManifestStore(dir), dir }, options);
}

/**
 * The status of any cluster: its instances probed, its manifest read, and
 * the healing of the supervisor of `dir` (this host's), when given.
 */
export async function statusOf(
  cluster: { view: ClusterView; store: ManifestStore; dir: string | undefined },
  options: StatusOptions = {},
): Promise<StatusReport> {
  const { view } = cluster;
  const config = { replicas: view.replicas };
  const probes = await probeInstances(
    view.ids.map((id) => ({ id, address: view.address(id) })),
    undefined,
    options.tls,
  );
  const up = new Set(probes.filter((p) => p.up).map((p) => p.id));
  // None up, for TLS: "all down, every file lost" would be wrong; say what is.
  const tlsError = up.size === 0 &&
    preferredTlsError(probes.flatMap((p) => p.tlsError ?? []), probes.length);
  if (tlsError) throw tlsError;
  const held = options.checkCopies
    ? await _heldParts(probes.filter((p) => !p.busy), options.tls)
    : undefined;
  const busy = new Set(probes.filter((p) => p.busy).map((p) => p.id));
  // Answers, but serves no copy: its store cannot be read, or its disk stalled.
  const failing = new Set(
    probes.filter((p) => typeof p.stats?.storeError === "string").map((p) => p.id),
  );
  // A copy is live when its instance answers and, when checked, lists it at
  // the part's size (a truncated copy cannot be read whole). A busy instance
  // (every connection taken) is alive but cannot list: its copies count as
  // the manifest says, and the report shows it busy.
  const isLive = (id: string, part: { digest: string; size: number }) =>
    up.has(id) && !failing.has(id) &&
    (held === undefined || busy.has(id) || held.get(id)?.get(part.digest) === part.size);
  const entries = await walkWhole(async () => {
    const entries: FileEntry[] = [];
    for await (const { entry } of allEntries(cluster.store)) entries.push(entry);
    return entries;
  });
  const unused = held === undefined ? undefined : await _unusedSpace(held, entries, cluster.dir);
  const files = entries
    // The order of fts ls (by code unit), not the locale's.
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((file) => {
      let minLive = file.parts.length === 0 ? config.replicas : Infinity;
      const under: number[] = [];
      const lost: number[] = [];
      file.parts.forEach((part, index) => {
        const live = part.replicas.filter((id) => isLive(id, part)).length;
        minLive = Math.min(minLive, live);
        if (live < config.replicas) under.push(index);
        if (live === 0) lost.push(index);
      });
      return {
        name: file.name,
        size: file.size,
        parts: file.parts.length,
        minLiveReplicas: minLive,
        underReplicatedParts: under.length,
        lostParts: lost.length,
        underReplicatedPartNumbers: under,
        lostPartNumbers: lost,
      };
    });
  return {
    replicas: config.replicas,
    instances: probes.map((p) => ({
      id: p.id,
      address: p.address,
      up: p.up,
      ...(p.busy ? { busy: true } : {}),
      ...(typeof p.stats?.storeError === "string" ? { storeError: p.stats.storeError } : {}),
      ...(typeof p.stats?.partsServed === "number" ? { partsServed: p.stats.partsServed } : {}),
      ...(typeof p.stats?.bytesServed === "number" ? { bytesServed: p.stats.bytesServed } : {}),
      ...(p.stats ? { counters: _numericCounters(p.stats) } : {}),
    })),
    files,
    ...(unused ? { unused } : {}),
    ...(cluster.dir === undefined
      ? { supervisor: null, healing: null }
      : await _healStatus(cluster.dir)),
  };
}

/** The space parts no file uses hold on the instances that listed their parts. */
async function _unusedSpace(
  held: ReadonlyMap<string, ReadonlyMap<string, number>>,
  entries: readonly FileEntry[],
  dir: string | undefined,
): Promise<NonNullable<StatusReport["unused"]>> {
  const used = new Set(entries.flatMap((entry) => entry.parts.map((part) => part.digest)));
  const digests = new Set<string>();
  let copies = 0;
  let bytes = 0;
  for (const parts of held.values()) {
    for (const [digest, size] of parts) {
      if (used.has(digest)) continue;
      digests.add(digest);
      copies++;
      bytes += size;
    }
  }
  const unusedAfterMs = DEFAULT_UNUSED_AFTER_MS;
  let young: number | undefined;
  if (dir !== undefined && digests.size > 0) {
    const stores = await storesOnHost(dir);
    const cutoff = Date.now() - unusedAfterMs;
    young = 0;
    for (const digest of digests) {
      if (await untouchedCopies(stores, digest, cutoff) === undefined) young++;
    }
  }
  return { parts: digests.size, copies, bytes, young, unusedAfterMs };
}

function _numericCounters(stats: Record<string, unknown>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(stats).filter((entry): entry is [string, number] =>
      typeof entry[1] === "number"
    ),
  );
}
