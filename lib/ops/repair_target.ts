/**
 * What a repair works on, whichever store backs the cluster: its view
 * (replicas, instances, addresses, failure domains), the manifest and the
 * locks, how to tell whether an instance holds a copy now, how to delete a
 * surplus copy, and the part stores of this host for the unused-part sweep.
 *
 * A single-host cluster (fileRepairTarget) reaches every store through the
 * data directory. A cluster in etcd (etcdRepairTarget) asks instances over
 * the network whether they hold a copy, and deletes copies only on this
 * host's instances: a surplus copy elsewhere leaves the manifest and is
 * announced in etcd, for its own host to delete (etcd_freed_parts.ts).
 */
import { clusterStartCommand } from "../client/servers.ts";
import { type ClusterConfig, dataPaths } from "../state/config.ts";
import { type ClusterView, configView } from "../state/cluster_view.ts";
import { type Locker, type ManifestStore } from "../state/manifest_store.ts";
import { openLocker, openManifestStore } from "../state/open_manifest_store.ts";
import { hostStoreOf, storesOnHost } from "../state/part_gc.ts";
import { PartStore, STORE_STALL_MS, StoreStalledError } from "../state/store.ts";
import { removeStaleTemps } from "../base/fs_util.ts";
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { Peer } from "../client/peer.ts";
import {
  type Identity,
  loadIdentity,
  loadOrCreateIdentity,
  operatorIdentityPath,
} from "../auth/identity.ts";
import { connectForRepair } from "./repair_options.ts";
import { announceFreed, type CopyOf } from "../etcd/etcd_freed_parts.ts";

export interface RepairTarget {
  readonly view: ClusterView;
  /** The command that starts this cluster's instances, for a message when none answers. */
  readonly startCommand: string;
  readonly store: ManifestStore;
  readonly locker: Locker;
  /** The size of instance `id`'s copy of a part now, or undefined when it holds none. */
  storedSize(id: string, digest: string): Promise<number | undefined>;
  /** Deletes instance `id`'s copy; false when there was none or it is not on this host. */
  removeCopy(id: string, digest: string): Promise<boolean>;
  /** Whether removeCopy can delete instance `id`'s copies (it is on this host). */
  removesCopiesOn(id: string): boolean;
  /**
   * Tells the hosts of other instances that their `copies` are listed by no
   * file (called under the parts lock), so that they delete them; absent
   * where every copy is on this host.
   */
  announceUnlisted?(copies: CopyOf[]): Promise<void>;
  /**
   * Tells the hosts of other instances that no file uses the parts of their
   * `copies` (called under the parts lock), so that they delete each one
   * still untouched since `untouchedSince` (ms since the epoch).
   */
  announceUnused?(copies: CopyOf[], untouchedSince: number): Promise<void>;
  /** The part stores of this host's instances. */
  localStores(): Promise<PartStore[]>;
  /** Cleans up after an interrupted run before a new one starts. */
  prepare(): Promise<void>;
  /**
   * The key copies are stored with: the operator's, from this host's data
   * directory (a closed cluster takes parts only from writers and the
   * operator); undefined when this host has none (copyPart makes a key).
   */
  copyIdentity(): Promise<Identity | undefined>;
}

/** The target of a single-host cluster: everything in the data directory `dir`. */
export function fileRepairTarget(dir: string, config: ClusterConfig): RepairTarget {
  const paths = dataPaths(dir);
  // Under the parts lock a stalled disk must not hang: each operation ends within STORE_STALL_MS.
  const storeOf = (id: string) =>
    new PartStore(paths.instanceDir(id), { deadlineMs: STORE_STALL_MS });
  return {
    view: configView(config),
    startCommand: clusterStartCommand(dir),
    store: openManifestStore(dir),
    locker: openLocker(dir),
    storedSize: (id, digest) => _sizeUnlessStalled(storeOf(id), digest),
    removeCopy: (id, digest) => storeOf(id).remove(digest),
    removesCopiesOn: () => true,
    localStores: () => storesOnHost(dir),
    // A manifest write cut off by a kill leaves its temp file beside it; a copy
    // cut off by one, in the target's store (which its own start may miss).
    prepare: async () => {
      await removeStaleTemps(dir);
      await _cleanStaleTemps(await storesOnHost(dir));
    },
    // The host of the data directory is the operator's: the key is made if it is missing.
    copyIdentity: () => loadOrCreateIdentity(paths.operatorIdentity),
  };
}

/**
 * The target of a cluster in etcd, from one host: `dir` is this host's data
 * directory (its instances' stores are DIR/instances/PORT), `host` the
 * address its instances listen on; `holder` names the lock holder.
 */
export async function etcdRepairTarget(
  cluster: EtcdCluster,
  local: { dir: string; host: string } | undefined,
  holder: string,
): Promise<RepairTarget> {
  const view = await cluster.view();
  const localStore = local ? hostStoreOf(local.dir, local.host) : () => undefined;
  return {
    view,
    startCommand: clusterStartCommand("", {
      endpoints: [...cluster.etcd.endpoints],
      cluster: cluster.name,
    }),
    store: cluster.manifest,
    locker: cluster.locker(holder),
    storedSize: async (id, digest) => {
      const mine = localStore(id);
      if (mine) return await _sizeUnlessStalled(mine, digest);
      let peer: Peer | undefined;
      try {
        peer = await connectForRepair(view.address(id));
        return await peer.hasPart(digest);
      } catch {
        return undefined;
      } finally {
        peer?.close();
      }
    },
    removeCopy: async (id, digest) => (await localStore(id)?.remove(digest)) ?? false,
    removesCopiesOn: (id) => localStore(id) !== undefined,
    announceUnlisted: async (copies) => {
      const revision = await cluster.manifest.revision();
      await announceFreed(cluster.etcd, cluster.keys, {
        revision,
        digests: [],
        copies,
        unused: [],
      });
    },
    announceUnused: async (unused, untouchedSince) => {
      const revision = await cluster.manifest.revision();
      await announceFreed(cluster.etcd, cluster.keys, {
        revision,
        digests: [],
        copies: [],
        unused,
        untouchedSince,
      });
    },
    localStores: async () => (local ? await storesOnHost(local.dir) : []),
    prepare: async () => await _cleanStaleTemps(local ? await storesOnHost(local.dir) : []),
    copyIdentity: async () =>
      local ? await loadIdentity(operatorIdentityPath(local.dir)) : undefined,
  };
}

/** The size of a local copy; undefined when there is none, or its disk stalled. */
async function _sizeUnlessStalled(store: PartStore, digest: string): Promise<number | undefined> {
  try {
    return await store.sizeOf(digest);
  } catch (error) {
    if (error instanceof StoreStalledError) return undefined;
    throw error;
  }
}

/** Removes abandoned temp files from each store; one whose disk stalled is left as it is. */
async function _cleanStaleTemps(stores: PartStore[]): Promise<void> {
  for (const store of stores) {
    await store.cleanStaleTemps().catch((error) => {
      if (!(error instanceof StoreStalledError)) throw error;
    });
  }
}
