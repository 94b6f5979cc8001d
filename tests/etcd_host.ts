/**
 * Hosts of a cluster in etcd, on loopback addresses: `fts cluster --etcd`
 * with R=2 on a given address, port range and data directory, printing
 * plain lines; resolves once it says ready (and kills it if it never does).
 * And etcdTest(): a test with its own etcd, temp directory and hosts.
 */
import { etcdClusterArgs, type EtcdClusterOptions } from "../bench/etcd_cluster_args.ts";
import { join } from "node:path";
import { freePortRange, FtsProcess } from "./harness.ts";
import { EtcdProcess } from "../bench/etcd_process.ts";
import { missingTool } from "./missing_tool.ts";

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

/** Host `i` of a test on loopback: 127.0.0.{i+2}, `servers` instances, data in DIR/host{i}. */
export function startLoopbackHost(
  i: number,
  options: { flags: string[]; dir: string; extra: string[]; servers?: number },
): Promise<FtsProcess> {
  const servers = options.servers ?? 2;
  return startEtcdHost({
    flags: options.flags,
    host: `127.0.0.${i + 2}`,
    servers,
    basePort: freePortRange(servers),
    data: join(options.dir, `host${i}`),
    extra: options.extra,
  });
}

/**
 * A test over one etcd on 127.0.0.1 and a temp directory: `fn` starts its
 * hosts into `hosts`, which are stopped after, with etcd and the directory.
 */
export function etcdTest(
  name: string,
  prefix: string,
  fn: (dir: string, etcd: EtcdProcess, hosts: FtsProcess[]) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: missingTool("etcd"),
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix });
      const etcd = await EtcdProcess.start({ addresses: ["127.0.0.1"] });
      const hosts: FtsProcess[] = [];
      try {
        await fn(dir, etcd, hosts);
      } finally {
        for (const host of hosts) {
          host.kill("SIGTERM");
          await host.status;
        }
        await etcd.stop();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}
