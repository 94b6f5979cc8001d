/**
 * The repair a command runs: of the single-host cluster in its data
 * directory, or of a cluster in etcd. From a host of an etcd cluster (its
 * data directory describes this host's instances), copies on this host's
 * instances that the repair drops or finds unused are deleted too.
 */
import { loadConfig, requireConfig } from "../state/config.ts";
import { type EtcdTarget } from "../etcd/etcd_keys.ts";
import { type RepairRunner } from "./heal.ts";
import { repairCluster } from "./repair.ts";

export async function repairRunner(
  dir: string,
  etcd: EtcdTarget | undefined,
): Promise<RepairRunner> {
  if (!etcd) {
    const config = await requireConfig(dir);
    return (options) => repairCluster(dir, config, options);
  }
  const { EtcdCluster } = await import("../etcd/etcd_cluster.ts");
  const { etcdRepairRunner } = await import("./etcd_heal.ts");
  const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
  await cluster.requireSettings();
  const local = await loadConfig(dir);
  return etcdRepairRunner(cluster, local ? { dir, host: local.host } : undefined);
}
