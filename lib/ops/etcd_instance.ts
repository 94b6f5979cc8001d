/**
 * What an instance of a cluster in etcd needs besides its own part store:
 * the mutations' view of the cluster (settings and members from etcd), the
 * operator's key from the settings, the writers policy from etcd, and the copies a publish names, asked of
 * the instances that hold them (`part.has`, one connection per instance),
 * since instances on other hosts share no directory with this one.
 *
 * Freeing parts after a delete or a replace frees the copies on this host's
 * instances and announces the digests to the others (etcd_freed_parts.ts);
 * each host deletes its copies of what the others announce, repairs' unlisted
 * copies too (freeAnnouncedCopies).
 */
import { type EtcdCluster } from "../etcd/etcd_cluster.ts";
import { Peer } from "../client/peer.ts";
import { type MutationsContext } from "../server/mutations.ts";
import { type PartStore } from "../state/store.ts";
import { freeUnreferenced, removeCopies, storesOnHost, untouchedCopies } from "../state/part_gc.ts";
import { PARTS_LOCK, REPAIR_LOCK } from "../state/manifest_store.ts";
import { announceFreed, type CopyOf, followFreed, type Freed } from "../etcd/etcd_freed_parts.ts";
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
              await announceFreed(cluster.etcd, cluster.keys, {
                revision,
                digests: freed,
                copies: [],
                unused: [],
              });
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
 * Deletes this host's copies that other hosts announce as no longer needed
 * (etcd_freed_parts.ts), until `signal` aborts: of digests an rm or a
 * replace left unused, those no entry written since uses (under the parts
 * lock); of copies a repair unlisted, those no entry written since lists
 * (under the repair lock and the parts lock); of copies of parts a repair
 * found unused, those still untouched since its cutoff that no entry
 * written since uses (under the parts lock). Run by each host's supervisor
 * for its instances, and by an instance no supervisor runs for its own
 * store; the locks are held as `holder`. Returns when it stops.
 */
export function freeAnnouncedCopies(
  cluster: EtcdCluster,
  scope: {
    holder: string;
    /** This host's part stores. */
    stores: () => Promise<PartStore[]>;
    /** The store of instance `id` (ADDR:PORT) when it is on this host. */
    storeOf: (id: string) => PartStore | undefined;
  },
  signal: AbortSignal,
): Promise<void> {
  const locker = cluster.locker(scope.holder);
  const freeDigests = async (revision: number, digests: string[]) => {
    const stores = await scope.stores();
    const held: string[] = [];
    for (const digest of digests) {
      for (const store of stores) {
        if (await _holds(store, digest)) {
          held.push(digest);
          break;
        }
      }
    }
    if (held.length === 0) return;
    await locker.withLock(PARTS_LOCK, async () => {
      const { used } = await _writtenSince(cluster, revision);
      for (const digest of held) if (!used.has(digest)) await removeCopies(stores, digest);
    });
  };
  const freeCopies = async (revision: number, copies: CopyOf[]) => {
    const held: { store: PartStore; key: string; digest: string }[] = [];
    for (const { id, digest } of copies) {
      const store = scope.storeOf(id);
      if (store && await store.sizeOf(digest) !== undefined) {
        held.push({ store, key: `${id} ${digest}`, digest });
      }
    }
    if (held.length === 0) return;
    await locker.withLock(REPAIR_LOCK, () =>
      locker.withLock(PARTS_LOCK, async () => {
        const { listed } = await _writtenSince(cluster, revision);
        for (const { store, key, digest } of held) {
          if (!listed.has(key)) await store.remove(digest);
        }
      }));
  };
  const freeUnused = async (revision: number, unused: CopyOf[], since: number) => {
    const held: { store: PartStore; digest: string }[] = [];
    for (const { id, digest } of unused) {
      const store = scope.storeOf(id);
      if (store && await untouchedCopies([store], digest, since)) held.push({ store, digest });
    }
    if (held.length === 0) return;
    await locker.withLock(PARTS_LOCK, async () => {
      const { used } = await _writtenSince(cluster, revision);
      for (const { store, digest } of held) {
        // Touched since it was looked at (an upload found it): kept, as a repair here keeps it.
        if (used.has(digest) || !await untouchedCopies([store], digest, since)) continue;
        await removeCopies([store], digest);
      }
    });
  };
  const free = async ({ revision, digests, copies, unused, untouchedSince }: Freed) => {
    await freeDigests(revision, digests);
    await freeCopies(revision, copies);
    if (untouchedSince !== undefined) await freeUnused(revision, unused, untouchedSince);
  };
  return followFreed(cluster.etcd, cluster.keys, free, signal);
}

/**
 * What the entries written after `revision` refer to: the digests they use,
 * and the copies they list, as "ID DIGEST".
 */
async function _writtenSince(
  cluster: EtcdCluster,
  revision: number,
): Promise<{ used: Set<string>; listed: Set<string> }> {
  const used = new Set<string>();
  const listed = new Set<string>();
  for await (const entry of cluster.manifest.writtenSince(revision)) {
    for (const part of entry.parts) {
      used.add(part.digest);
      for (const id of part.replicas) listed.add(`${id} ${part.digest}`);
    }
  }
  return { used, listed };
}

/** Whether `store` holds a copy of `digest`, good or quarantined. */
async function _holds(store: PartStore, digest: string): Promise<boolean> {
  if (await store.sizeOf(digest) !== undefined) return true;
  return await Deno.lstat(store.quarantinePathOf(digest)).then(() => true, () => false);
}
