/**
 * Healing a cluster in etcd, from one host's supervisor: the repair it runs
 * (over every host, under the cluster-wide repair lock in etcd, so a repair
 * or a heal on another host never runs at the same time), where it learns
 * who is down (the members whose liveness key lapsed, looked at every
 * MEMBER_POLL_MS; a member forgotten with `fts forget` is down no more, and
 * one that joins starts a heal, which spreads copies to its failure domain),
 * and the election of the one host that acts on it (leadHealing()). Every
 * host's supervisor follows who is down and up and stands for election: one
 * run per event, not one per host, and when the host that heals stops or
 * dies, its lease lapses and another takes over.
 */
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { every } from "../base/deadline.ts";
import { sleep } from "../base/sleep.ts";
import { type Healer, type RepairRunner, STOP_WAIT_MS } from "./heal.ts";
import { repairTarget } from "./repair.ts";
import { etcdRepairTarget } from "./repair_target.ts";

/** How often a supervisor looks at which members are alive. */
export const MEMBER_POLL_MS = 1_000;
/** The lock whose holder heals for instances going down, coming back and joining. */
export const HEALER_LOCK = "healer";
/** Pause before standing for election again after etcd failed to answer. */
const ELECTION_RETRY_MS = 1_000;

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
        if (joined !== undefined) healer.instanceJoined(joined);
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

/**
 * Stands for election as the host that heals (the HEALER_LOCK, held under
 * its lease for as long as this supervisor runs): `healer` leads while
 * elected, and follows otherwise (told who leads), until the returned stop
 * is called, which gives the lock up so that another host takes over at
 * once. One cut off from etcd for the lease's time follows, and stands again.
 */
export function leadHealing(
  cluster: EtcdCluster,
  healer: Healer,
  holder: string,
): () => Promise<void> {
  const stopped = new AbortController();
  const locker = cluster.locker(holder);
  let release: (() => Promise<void>) | undefined;
  /** Gives the lock up, waiting STOP_WAIT_MS at most (etcd may not answer: its lease then lapses). */
  const giveUp = async () => {
    const held = release;
    release = undefined;
    if (held) await Promise.race([held().catch(() => {}), sleep(STOP_WAIT_MS)]);
  };
  const campaign = (async () => {
    while (!stopped.signal.aborted) {
      const lost = Promise.withResolvers<void>();
      try {
        release = await locker.acquire(HEALER_LOCK, {
          onLost: () => lost.resolve(),
          signal: stopped.signal,
          onHeld: (leader) => healer.setLeader(leader),
        });
        if (stopped.signal.aborted) break;
        healer.setLeading(true);
        await Promise.race([lost.promise, _aborted(stopped.signal)]);
        healer.setLeading(false);
        // Lapsed or unconfirmed: another host may lead now. Stop renewing the lease.
        if (!stopped.signal.aborted) await giveUp();
      } catch {
        // etcd unavailable, or stopping: stand again once it answers.
        healer.setLeader(undefined);
        if (!stopped.signal.aborted) await sleep(ELECTION_RETRY_MS);
      }
    }
    // Taken as the stop came: given up at once.
    await giveUp();
  })();
  let stopping: Promise<void> | undefined;
  return () =>
    stopping ??= (async () => {
      stopped.abort(new DOMException("The cluster is stopping", "AbortError"));
      // An etcd call under way may take its timeout: the lease then lapses by itself.
      await Promise.race([campaign, sleep(STOP_WAIT_MS)]);
      await giveUp();
    })();
}

function _aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
