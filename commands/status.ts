import {
  boolFlag,
  durationFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  parseFlags,
  stringFlag,
} from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { loadConfig, requireConfig, resolveDataDir } from "../lib/state/config.ts";
import { clusterStatus, statusOf, type StatusReport } from "../lib/ops/status.ts";
import { watchStatus } from "../lib/ui/status_watch.ts";
import { formatStatus } from "../lib/ui/status_format.ts";
import { clusterStartCommand, instanceTls } from "../lib/client/servers.ts";

export const USAGE =
  "fts status [--watch [--interval 1s]] [--json] [--tls-ca FILE] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts status                                   # up/down and each file's replica health",
  "fts status --watch                           # live view; q quits",
  "fts status --watch --json                    # one JSON snapshot per second, for scripts",
].join("\n");

/** Polling faster than this would load every instance for little news. */
const MIN_WATCH_INTERVAL_MS = 200;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    json: { type: "boolean" },
    "tls-ca": { type: "string" },
    watch: { type: "boolean", short: "w" },
    interval: { type: "string" },
    ...ETCD_FLAGS,
  });
  expectPositionals(flags, 0, 0, USAGE);
  if (stringFlag(flags, "interval") !== undefined && !boolFlag(flags, "watch")) {
    throw new UsageError("--interval sets how often --watch polls: give --watch too");
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const etcd = etcdTarget(flags);
  const tls = await instanceTls(dir, [], etcd, stringFlag(flags, "tls-ca"));
  if (etcd) {
    if (boolFlag(flags, "watch")) {
      throw new UsageError(
        "--watch shows a single-host cluster; with --etcd, run fts status again",
      );
    }
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    try {
      const report = await statusOf({
        view: await cluster.view(),
        store: cluster.manifest,
        // On a host of the cluster, its supervisor says what healing does.
        dir: (await loadConfig(dir)) ? dir : undefined,
      }, { tls, checkCopies: true });
      // Which host heals for the cluster: the holder of its election, as etcd says.
      const { HEALER_LOCK } = await import("../lib/ops/etcd_heal.ts");
      const held = await cluster.etcd.get(cluster.keys.lock(HEALER_LOCK)).then(
        (kv) => kv?.value ?? null,
        () => undefined, // etcd did not answer this once: not known, rather than "none"
      );
      if (held !== undefined) report.healer = held;
      _requireSomeInstanceUp(report, "start each host's fts cluster --etcd");
      console.log(boolFlag(flags, "json") ? JSON.stringify(report, null, 2) : formatStatus(report));
      return _exitCode(report);
    } finally {
      cluster.close();
    }
  }
  const config = await requireConfig(dir);
  const intervalMs = durationFlag(flags, "interval");
  if (intervalMs !== undefined && intervalMs < MIN_WATCH_INTERVAL_MS) {
    throw new UsageError(`--interval must be at least ${MIN_WATCH_INTERVAL_MS} ms`);
  }
  if (boolFlag(flags, "watch")) {
    const json = boolFlag(flags, "json");
    return await watchStatus({ dir, config, json, tls, ...(intervalMs ? { intervalMs } : {}) });
  }
  const report = await clusterStatus(dir, config, { tls, checkCopies: true });
  // With a supervisor running, every instance down is news it can show; without, nothing runs.
  if (!report.supervisor) {
    _requireSomeInstanceUp(report, `start it with "${clusterStartCommand(dir)}"`);
  }
  console.log(boolFlag(flags, "json") ? JSON.stringify(report, null, 2) : formatStatus(report));
  return _exitCode(report);
}

/**
 * 1 when some file has a part with no live copy (it cannot be fetched whole
 * now), so that a script or a monitor can tell; 0 otherwise, under-replicated
 * files included (they can be fetched, and healing tends to them).
 */
function _exitCode(report: StatusReport): number {
  return report.files.some((file) => file.lostParts > 0) ? 1 : 0;
}

/**
 * A cluster none of whose instances answers is not running: saying so beats
 * a report of every instance down and every file LOST (the parts are on disk).
 */
function _requireSomeInstanceUp(report: StatusReport, start: string): void {
  const { instances } = report;
  if (instances.length === 0 || instances.some((instance) => instance.up)) return;
  throw new Error(
    `No instance of the cluster answers (${instances[0]!.address}${
      instances.length > 1 ? ` and ${instances.length - 1} more` : ""
    }): is it running? ${start[0]!.toUpperCase()}${start.slice(1)}`,
  );
}
