/** Which servers a client talks to: named on the command line, or the cluster in DIR. */
import { instanceAddress, instanceIds, loadConfig } from "../state/config.ts";
import { UsageError } from "../wire/errors.ts";
import { shellWord } from "../base/printable.ts";
import { parseAddress } from "./peer.ts";
import { loadServeFlags } from "../state/serve_flags.ts";
import { resolve } from "../base/paths.ts";
import { loadTlsClientOptions, TLS_CA_ENV, type TlsClientOptions } from "../wire/tls.ts";
import { DEFAULT_CLUSTER_NAME, type EtcdTarget } from "../etcd/etcd_keys.ts";

/**
 * The addresses of the instances of a cluster in etcd whose liveness lease
 * holds. For a change (`forChange`), etcd must also have a quorum: without
 * one the change could not be recorded, so it fails here, before any byte is
 * sent, rather than after each step waited out etcd's request timeout.
 */
export async function liveAddresses(
  target: EtcdTarget,
  options: { forChange?: boolean } = {},
): Promise<string[]> {
  const { EtcdCluster } = await import("../etcd/etcd_cluster.ts");
  const cluster = new EtcdCluster(target.endpoints, target.cluster);
  try {
    await cluster.requireSettings();
    if (options.forChange) await cluster.etcd.requireQuorum();
    const [members, alive] = await Promise.all([cluster.members(), cluster.alive()]);
    const addresses = [...alive].map((id) => members.get(id)?.address ?? id);
    if (addresses.length === 0) {
      // A failure (exit 1), as a single-host cluster that is down is: not bad usage.
      throw new Error(
        `No instance of cluster ${JSON.stringify(target.cluster)} is up (etcd at ${
          target.endpoints.join(",")
        }): start one with "fts cluster --etcd URLS --host ADDR"`,
      );
    }
    return addresses;
  } finally {
    cluster.close();
  }
}

/**
 * `--server HOST:PORT` flags, then FTS_SERVERS (comma or space separated), then
 * the live instances of the cluster in etcd (with --etcd), then every
 * instance of the cluster recorded in the data directory.
 */
export async function resolveServers(
  dir: string,
  flagged: string[],
  etcd?: EtcdTarget,
  options: { forChange?: boolean } = {},
): Promise<string[]> {
  const named = flagged.length > 0
    ? flagged
    : (Deno.env.get("FTS_SERVERS") ?? "").split(/[\s,]+/).filter((s) => s.length > 0);
  if (named.length > 0) {
    for (const address of named) {
      try {
        parseAddress(address);
      } catch (cause) {
        throw new UsageError((cause as Error).message, { cause });
      }
    }
    return named;
  }
  if (etcd) return await liveAddresses(etcd, options);
  const config = await loadConfig(dir);
  if (!config) {
    throw new UsageError(
      `No cluster in ${dir} and no --server given: pass --server HOST:PORT, set FTS_SERVERS, or --data DIR`,
    );
  }
  return instanceIds(config).map((id) => instanceAddress(config, id));
}

/**
 * The command that starts the cluster resolveServers() finds with the same
 * arguments, for a message saying to start it; undefined for servers named
 * on the command line or in FTS_SERVERS (they may be anyone's).
 */
export function startCommand(
  dir: string,
  flagged: string[],
  etcd?: EtcdTarget,
): string | undefined {
  if (flagged.length > 0 || (Deno.env.get("FTS_SERVERS") ?? "").trim() !== "") return undefined;
  return clusterStartCommand(dir, etcd);
}

/**
 * The command that starts a cluster: `fts cluster --data DIR` for the one in
 * the data directory `dir`, `fts cluster --etcd URLS --host ADDR` for one in
 * etcd (ADDR is each host's own).
 */
export function clusterStartCommand(dir: string, etcd?: EtcdTarget): string {
  if (etcd) {
    const named = etcd.cluster === DEFAULT_CLUSTER_NAME ? "" : ` --cluster ${etcd.cluster}`;
    return `fts cluster --etcd ${shellWord(etcd.endpoints.join(","))}${named} --host ADDR`;
  }
  return `fts cluster --data ${shellWord(dir)}`;
}

/**
 * The TLS a command dials the instances with: the CA `--tls-ca` names, else
 * FTS_TLS_CA's, else, for the cluster in the data directory (no --server,
 * FTS_SERVERS or --etcd), the CA its supervisor told the instances to trust
 * (serve_flags.json): on the cluster's host a TLS cluster needs no flag.
 * The CA goes into FTS_TLS_CA too, where every connection of the command
 * looks (defaultTlsClientOptions); undefined means plain TCP.
 */
export async function instanceTls(
  dir: string,
  flagged: readonly string[],
  etcd: EtcdTarget | undefined,
  caFlag: string | undefined,
): Promise<TlsClientOptions | undefined> {
  const fromDataDir = etcd === undefined && startCommand(dir, [...flagged]) !== undefined;
  const ca = caFlag ?? (Deno.env.get(TLS_CA_ENV) || undefined) ??
    (fromDataDir ? (await loadServeFlags(dir).catch(() => undefined))?.tlsCa : undefined);
  if (ca === undefined) return undefined;
  const options = await loadTlsClientOptions(ca);
  Deno.env.set(TLS_CA_ENV, resolve(ca));
  return options;
}
