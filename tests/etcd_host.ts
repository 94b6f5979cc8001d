/**
 * One host of a cluster in etcd, on loopback addresses: `fts cluster --etcd`
 * with R=2 on a given address, port range and data directory, printing
 * plain lines; resolves once it says ready (and kills it if it never does).
 */
import { FtsProcess } from "./harness.ts";

export async function startEtcdHost(options: {
  /** --etcd URLS --cluster NAME (and --etcd-ca), as the test's clients pass them too. */
  flags: string[];
  host: string;
  servers: number;
  basePort: number;
  data: string;
  /** More flags: --part-size, --heal-after, TLS... */
  extra?: string[];
}): Promise<FtsProcess> {
  const cluster = new FtsProcess([
    "cluster",
    ...options.flags,
    "--host",
    options.host,
    "--servers",
    String(options.servers),
    "--base-port",
    String(options.basePort),
    "--replicas",
    "2",
    ...(options.extra ?? []),
    "--data",
    options.data,
    "--plain",
  ]);
  try {
    await cluster.waitFor(/ready/);
  } catch (error) {
    cluster.kill("SIGKILL");
    await cluster.status;
    throw error;
  }
  return cluster;
}
