/**
 * Healing a cluster in etcd, from one host's supervisor: the repair it runs
 * (over every host, under the cluster-wide repair lock in etcd, so a repair
 * or a heal on another host never runs at the same time) and where it learns
 * who is down (the members whose liveness key lapsed, looked at every
 * MEMBER_POLL_MS; a member forgotten with `fts forget` is down no more, and
 * one that joins starts a heal, which spreads copies to its failure domain).
 * Every host's supervisor does both: when the host that is healing dies, its
 * lock lapses and the next one takes over.
 */
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { every } from "../base/deadline.ts";
import { type Healer, type RepairRunner } from "./heal.ts";
import { repairTarget } from "./repair.ts";
import { etcdRepairTarget } from "./repair_target.ts";

/** How often a supervisor looks at which members are alive. */
export const MEMBER_POLL_MS = 1_000;

/**
 * Repairs of the cluster in etcd; with `local` (this host's data directory
 * and address), surplus and unused copies on this host's instances are deleted.
 */
export function etcdRepairRunner(
  cluster: EtcdCluster,
  local: { dir: string; host: string } | undefined,
): RepairRunner {
  const holder = `repair@${local?.host ?? "client"} (pid ${Deno.pid})`;
  return async (options) =>
    await repairTarget(await etcdRepairTarget(cluster, local, holder), options);
}

/** Tells `healer` which members are down and up, as etcd's liveness keys say; returns a stop. */
export function watchMembers(cluster: EtcdCluster, healer: Healer): () => void {
  let looking = false;
  let known: Set<string> | undefined;
  const poll = () => {
    if (looking) return;
    looking = true;
    void (async () => {
      try {
        const [members, alive] = await Promise.all([cluster.members(), cluster.alive()]);
        for (const id of members.keys()) {
          if (alive.has(id)) healer.instanceUp(id);
          else healer.instanceDown(id);
        }
        for (const id of known ?? []) if (!members.has(id)) healer.instanceForgotten(id);
        // A new member (a host joined): copies may now spread over more failure domains.
        const joined = [...members.keys()].find((id) => known !== undefined && !known.has(id));
        if (joined !== undefined && healer.enabled) healer.trigger(`instance ${joined} joined`);
        known = new Set(members.keys());
      } catch {
        // etcd unreachable for now: nobody's state is known to have changed.
      } finally {
        looking = false;
      }
    })();
  };
  // At once: a host that joins in the first second is then a newcomer.
  poll();
  return every(MEMBER_POLL_MS, poll);
}
