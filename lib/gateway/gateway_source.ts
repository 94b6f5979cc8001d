/**
 * Where a gateway learns about the cluster: the instances to ask for file
 * entries and the file list, and the other gateways that serve the same
 * files (the mirrors its Metalink documents list). This interface is the one
 * seam between the gateway and how a cluster is found; a data directory (or
 * `--server` flags) is one source, a coordination service would be another,
 * in a file of its own.
 */
import { resolveServers } from "../client/servers.ts";
import { recordGateway, runningGateways } from "./gateway_registry.ts";

export interface GatewaySource {
  /** "host:port" of instances to ask for entries; asked again on every lookup. */
  servers(): Promise<string[]>;
  /** Base URLs ("http://host:port") of the other gateways serving this cluster. */
  gateways(): Promise<string[]>;
  /** Makes this gateway known to the others; the returned function withdraws it. */
  announce(url: string): Promise<() => Promise<void>>;
}

/**
 * A cluster found through a data directory (its config names the instances,
 * its run directory records the gateways) or through `--server` addresses;
 * `mirrors` are gateway URLs given by hand (`--mirror`).
 */
export function dataDirSource(
  dir: string,
  flaggedServers: readonly string[],
  mirrors: readonly string[],
): GatewaySource {
  const recorded = flaggedServers.length === 0;
  return {
    servers: () => resolveServers(dir, [...flaggedServers]),
    gateways: async () => {
      const others = recorded ? await runningGateways(dir) : [];
      return [...new Set([...others, ...mirrors])];
    },
    announce: (url) => recorded ? recordGateway(dir, url) : Promise.resolve(async () => {}),
  };
}
