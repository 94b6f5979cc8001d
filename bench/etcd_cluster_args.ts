/**
 * The command line of one host of a cluster in etcd, for the tests and the
 * benchmark alike: `fts cluster --etcd URLS --cluster NAME --host ADDR` with
 * its instances, ports, copies and data directory, printing plain lines.
 */

export interface EtcdClusterOptions {
  /** --etcd URLS --cluster NAME (and --etcd-ca), as the clients pass them too. */
  flags: string[];
  /** The address this host's instances listen on and announce. */
  host: string;
  servers: number;
  basePort: number;
  replicas: number;
  data: string;
  /** More flags: --part-size, --heal-after, --http, TLS... */
  extra?: string[];
}

/** `cluster ...` arguments for fts. */
export function etcdClusterArgs(options: EtcdClusterOptions): string[] {
  return [
    "cluster",
    ...options.flags,
    "--host",
    options.host,
    "--servers",
    String(options.servers),
    "--base-port",
    String(options.basePort),
    "--replicas",
    String(options.replicas),
    ...(options.extra ?? []),
    "--data",
    options.data,
    "--plain",
  ];
}
