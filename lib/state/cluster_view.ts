/**
 * What a command or instance needs to know of a cluster, whichever store
 * backs it: how many replicas a part gets, the default part size, every
 * instance, where each is reached and which failure domain it sits in. A
 * single-host cluster gets it from its config file (`configView()`); a
 * cluster in etcd from its settings and members (etcd/etcd_cluster.ts).
 */
import { type ClusterConfig, instanceAddress, instanceIds } from "./config.ts";

export interface ClusterView {
  readonly replicas: number;
  readonly partSize: number;
  /** Every instance of the cluster, live or not, in a stable order. */
  readonly ids: readonly string[];
  /** Where clients dial instance `id` ("host:port"). */
  address(id: string): string;
  /** Its failure domain: a part's replicas go to as many distinct domains as there are. */
  domain(id: string): string;
}

/** The failure domain an address implies: its host (every port of one machine dies with it). */
export function domainOfAddress(address: string): string {
  const colon = address.lastIndexOf(":");
  return colon < 0 ? address : address.slice(0, colon).replace(/^\[|\]$/g, "");
}

/** The view of a single-host cluster: one failure domain, ids are ports. */
export function configView(config: ClusterConfig): ClusterView {
  return {
    replicas: config.replicas,
    partSize: config.partSize,
    ids: instanceIds(config),
    address: (id) => instanceAddress(config, id),
    domain: () => config.host,
  };
}
