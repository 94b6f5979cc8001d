/**
 * What an instance of a cluster in etcd needs besides its own part store:
 * the mutations' view of the cluster (settings and members from etcd), the
 * operator's key from the settings, the writers policy from etcd, and the copies a publish names, asked of
 * the instances that hold them (`part.has`, one connection per instance),
 * since instances on other hosts share no directory with this one.
 *
 * Freeing parts after a delete or a replace frees the copies on this host's
 * instances and announces the digests to the others (etcd_freed_parts.ts);
 * each host frees its copies of what the others announce (freeAnnouncedCopies).
 */
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { Peer } from "../client/peer.ts";
import { type MutationsContext } from "../server/mutations.ts";
import { type PartStore } from "../state/store.ts";
import { freeUnreferenced, removeCopies, storesOnHost } from "../state/part_gc.ts";
import { PARTS_LOCK } from "../state/manifest_store.ts";
import { announceFreed, followFreed, type FreedDigests } from "../etcd/etcd_freed_parts.ts";
import { type TlsClientOptions } from "../wire/tls.ts";
import { WRITERS_CACHE_MS } from "../auth/writers_policy.ts";
import { cachedRead } from "../base/cached_read.ts";
import { unavailableOnEtcdError } from "../etcd/etcd_errors.ts";
import { readEtcdWriters } from "../etcd/etcd_writers.ts";

/** How long a publish waits to reach an instance holding a copy it names. */
const COPY_CHECK_CONNECT_TIMEOUT_MS = 2_000;
const COPY_CHECK_STALL_TIMEOUT_MS = 5_000;

export function etcdMutationsContext(
  cluster: EtcdCluster,
  self: {
    id: string;
    store: PartStore;
    clusterId: string;
    /** The data directory holding this host's instances' stores (none with `serve --store`). */
    hostDir?: string | undefined;
  },
  tls?: TlsClientOptions,
): MutationsContext {
  const locker = cluster.locker(self.id);
  return {
    nonces: cluster.nonces(),
    store: cluster.manifest,
    locker,
    view: () => cluster.view(),
    // Asked on every part.put: etcd out of reach keeps the last answer (nobody can change it
    // then either), or with none yet is UNAVAILABLE, as a change would be.
    operatorKey: cachedRead(
      () => unavailableOnEtcdError(async () => (await cluster.settings())?.operatorKey),
      WRITERS_CACHE_MS,
      { staleOnError: true },
    ),
    writers: cachedRead(
      () => unavailableOnEtcdError(() => readEtcdWriters(cluster.etcd, cluster.keys)),
      WRITERS_CACHE_MS,
      { staleOnError: true },
    ),
    clusterId: () => Promise.resolve(self.clusterId),
    storedSizes: async (copies) => {
      const view = await cluster.view();
      const byId = new Map<string, number[]>();
      copies.forEach(({ id }, i) => {
        const list = byId.get(id);
        if (list) list.push(i);
        else byId.set(id, [i]);
      });
      const sizes: (number | undefined)[] = copies.map(() => undefined);
      await Promise.all([...byId].map(async ([id, indexes]) => {
        if (id === self.id) {
          for (const i of indexes) sizes[i] = await self.store.sizeOf(copies[i]!.digest);
          return;
        }
        let peer: Peer | undefined;
        try {
          peer = await Peer.connect(view.address(id), {
            connectTimeoutMs: COPY_CHECK_CONNECT_TIMEOUT_MS,
            stallTimeoutMs: COPY_CHECK_STALL_TIMEOUT_MS,
            ...(tls ? { tls } : {}),
          });
          for (const i of indexes) sizes[i] = await peer.hasPart(copies[i]!.digest);
        } catch {
          // Unreachable: its copies count as missing, and the publish says which.
        } finally {
          peer?.close();
        }
      }));
      return sizes;
    },
    // On every instance of this host (its data directory's), as a single-host cluster does.
    freeParts: async (digests) => {
      const { digests: freed, copies } = await freeUnreferenced(
        {
          store: cluster.manifest,
          locker,
          stores: async () => self.hostDir ? await storesOnHost(self.hostDir) : [self.store],
        },
        digests,
        {
          // Read under the lock: no entry refers to them at this revision (see etcd_freed_parts.ts).
          onFreed: async (freed) => {
            try {
              const revision = await cluster.manifest.revision();
              await announceFreed(cluster.etcd, cluster.keys, { revision, digests: freed });
            } catch {
              // The change is made and this host's copies are freed: those elsewhere wait for a
              // repair on their host, as they would for an instance that was down.
            }
          },
        },
      );
      return { digests: freed, copies };
    },
  };
}

/**
 * Frees the copies in `stores` of the digests instances announce as unused
 * after a delete or a replace, until `signal` aborts: those no entry written
 * since the announcement's revision refers to, under the parts lock (held
 * as `holder`). Run by each host's supervisor for its instances, and by an
 * instance no supervisor runs for its own store. Returns when it stops.
 */
export function freeAnnouncedCopies(
  cluster: EtcdCluster,
  scope: { holder: string; stores: () => Promise<PartStore[]> },
  signal: AbortSignal,
): Promise<void> {
  const locker = cluster.locker(scope.holder);
  const free = async ({ revision, digests }: FreedDigests) => {
    const stores = await scope.stores();
    const held: string[] = [];
    for (const digest of digests) {
      for (const store of stores) {
        if (
          await store.sizeOf(digest) !== undefined ||
          await _exists(store.quarantinePathOf(digest))
        ) {
          held.push(digest);
          break;
        }
      }
    }
    if (held.length === 0) return;
    await locker.withLock(PARTS_LOCK, async () => {
      const used = await cluster.manifest.referencedSince(revision, new Set(held));
      for (const digest of held) if (!used.has(digest)) await removeCopies(stores, digest);
    });
  };
  return followFreed(cluster.etcd, cluster.keys, free, signal);
}

async function _exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}
