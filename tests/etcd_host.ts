/**
 * One host of a cluster in etcd, on loopback addresses: `fts cluster --etcd`
 * with R=2 on a given address, port range and data directory, printing
 * plain lines; resolves once it says ready (and kills it if it never does).
 */
import { etcdClusterArgs, type EtcdClusterOptions } from "../bench/etcd_cluster_args.ts";
import { FtsProcess } from "./harness.ts";

export async function startEtcdHost(
  options: Omit<EtcdClusterOptions, "replicas">,
): Promise<FtsProcess> {
  const cluster = new FtsProcess(etcdClusterArgs({ ...options, replicas: 2 }));
  try {
    await cluster.waitFor(/ready/);
  } catch (error) {
    cluster.kill("SIGKILL");
    await cluster.status;
    throw error;
  }
  return cluster;
}
