/**
 * A gateway of a cluster in etcd: the instances to ask are those whose
 * liveness key holds (looked up again at most every SERVERS_TTL_MS, so a
 * host that dies or joins is seen within seconds), and every host's gateway
 * announces its URL under a lease at `gateways/URL`, so each gateway's
 * Metalink documents list all of them; a gateway that dies drops out when
 * its lease lapses.
 */
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { LeaseKeeper } from "../etcd/lease_keeper.ts";
import { liveAddresses } from "../client/servers.ts";
import { type EtcdTarget } from "../etcd/etcd_keys.ts";
import { type GatewaySource } from "./gateway_source.ts";

/** How long a looked-up list of live instances is used before asking etcd again. */
export const SERVERS_TTL_MS = 2_000;
/** A gateway's announcement lease: how long after it dies the others stop listing it. */
export const GATEWAY_LEASE_SECONDS = 10;

export function etcdGatewaySource(
  cluster: EtcdCluster,
  target: EtcdTarget,
  mirrors: readonly string[],
): GatewaySource {
  let cached: { at: number; servers: Promise<string[]> } | undefined;
  return {
    servers: () => {
      const now = performance.now();
      if (!cached || now - cached.at > SERVERS_TTL_MS) {
        const servers = liveAddresses(target);
        cached = { at: now, servers };
        servers.catch(() => (cached = undefined));
      }
      return cached.servers;
    },
    gateways: async () => {
      const { kvs } = await cluster.etcd.range(cluster.keys.gateways, { prefix: true });
      return [...new Set([...kvs.map((kv) => kv.value), ...mirrors])];
    },
    announce: async (url) => {
      const key = cluster.keys.gateway(encodeURIComponent(url));
      let keeper: LeaseKeeper | undefined;
      const register = async () => {
        const next = await LeaseKeeper.grant(cluster.etcd, GATEWAY_LEASE_SECONDS, () => {
          // The lease lapsed while etcd was out of reach: announce again.
          void register().catch(() => {});
        });
        keeper?.stop();
        keeper = next;
        await cluster.etcd.put(key, url, next.lease);
      };
      await register();
      return async () => {
        await keeper?.revoke().catch(() => {});
      };
    },
  };
}
