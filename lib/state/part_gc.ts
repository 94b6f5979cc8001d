/**
 * Freeing part storage: after a file leaves the manifest (rm, or replaced by an
 * upload), the copies of its parts that no other file uses are deleted from
 * every instance on this host, good and quarantined ones alike.
 *
 * The reference check and the deletion run under the parts lock (PARTS_LOCK),
 * and a publish checks that its parts are stored and commits under the same
 * lock, so the manifest never points at a part deleted here: a concurrent
 * upload whose part was freed before it published is told MISSING_PARTS and
 * sends it again.
 */
import { dataPaths } from "./config.ts";
import {
  allEntries,
  type Locker,
  ManifestChangedError,
  type ManifestStore,
  PARTS_LOCK,
  walkWhole,
} from "./manifest_store.ts";
import { openLocker, openManifestStore } from "./open_manifest_store.ts";
import { join } from "../base/paths.ts";
import { PartStore, STORE_STALL_MS, StoreStalledError } from "./store.ts";

export interface FreedParts {
  /** Digests no file refers to any more. */
  digests: number;
  /** Stored copies deleted, over all instances. */
  copies: number;
  /** Which digests they were. */
  freed: string[];
}

/** Instance ids that have storage in the data directory (whatever the config says now). */
export async function instancesWithStorage(dir: string): Promise<string[]> {
  const ids: string[] = [];
  try {
    for await (const entry of Deno.readDir(join(dir, "instances"))) {
      if (entry.isDirectory && /^\d+$/.test(entry.name)) ids.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return ids;
}

/** Every digest any file in the manifest refers to. */
export function referencedDigests(store: ManifestStore): Promise<Set<string>> {
  return walkWhole(async () => {
    const used = new Set<string>();
    for await (const { entry } of allEntries(store)) {
      for (const part of entry.parts) used.add(part.digest);
    }
    return used;
  });
}

/**
 * Entries a page of `usedDigests()` reads: the reads' buffers are garbage an
 * instance's heap and allocator keep. Walking 100,000 entries three times
 * left a process at 110-128 MB resident in pages of 1,000, 83 MB in pages of
 * 250 or 100, in about the same time.
 */
const USED_DIGESTS_PAGE = 250;

/**
 * Which of `candidates` a file in the manifest refers to. Holds only those,
 * not every digest of the manifest (about 10 MB at 100,000 files, which an
 * instance freeing the parts of one removed file would keep), and stops
 * reading once every candidate is found. A store that can (the file store)
 * reads its entries as text and parses only those that name a candidate.
 */
export function referencedAmong(
  store: ManifestStore,
  candidates: ReadonlySet<string>,
): Promise<Set<string>> {
  return walkWhole(async () => {
    const used = new Set<string>();
    if (store.usedDigests) {
      // Pages of one revision, as allEntries() walks them.
      let after: string | undefined;
      let revision: number | undefined;
      while (used.size < candidates.size) {
        const page = await store.usedDigests(
          candidates,
          after === undefined
            ? { limit: USED_DIGESTS_PAGE }
            : { after, atRevision: revision!, limit: USED_DIGESTS_PAGE },
        );
        revision ??= page.revision;
        if (page.revision !== revision) throw new ManifestChangedError(revision, page.revision);
        for (const digest of page.used) used.add(digest);
        if (!page.more || page.last === undefined) break;
        after = page.last;
      }
      return used;
    }
    for await (const { entry } of allEntries(store)) {
      for (const part of entry.parts) {
        if (candidates.has(part.digest)) used.add(part.digest);
      }
      if (used.size === candidates.size) break;
    }
    return used;
  });
}

/** Where freeing looks: the manifest, the lock that guards it, and the stores it may delete from. */
export interface FreeingScope {
  store: ManifestStore;
  locker: Locker;
  /** The part stores whose copies of unused parts are deleted. */
  stores: () => Promise<PartStore[]>;
}

/**
 * Deletes every copy of each candidate digest that no file in the current
 * manifest refers to, from every instance of the data directory. Takes the
 * parts lock (and changes nothing in the manifest).
 */
export function freeUnreferencedParts(
  dir: string,
  candidates: Iterable<string>,
  options: { untouchedSince?: number } = {},
): Promise<FreedParts> {
  return freeUnreferenced(
    { store: openManifestStore(dir), locker: openLocker(dir), stores: () => storesOnHost(dir) },
    candidates,
    options,
  );
}

/** freeUnreferencedParts() for any manifest store, lock and part stores. */
export async function freeUnreferenced(
  scope: FreeingScope,
  candidates: Iterable<string>,
  options: {
    /** Keep a part any copy of which was stored or touched after this time (ms since the epoch). */
    untouchedSince?: number;
    /** Told the digests freed, still under the parts lock (none: not called). */
    onFreed?: (digests: string[]) => Promise<void>;
  } = {},
): Promise<FreedParts> {
  const wanted = new Set(candidates);
  if (wanted.size === 0) return { digests: 0, copies: 0, freed: [] };
  return await scope.locker.withLock(PARTS_LOCK, async () => {
    const used = await referencedAmong(scope.store, wanted);
    const unused = [...wanted].filter((digest) => !used.has(digest));
    const freed: string[] = [];
    let copies = 0;
    if (unused.length > 0) {
      const stores = await scope.stores();
      for (const digest of unused) {
        const since = options.untouchedSince;
        if (since !== undefined && await untouchedCopies(stores, digest, since) === undefined) {
          continue;
        }
        freed.push(digest);
        copies += await removeCopies(stores, digest);
      }
    }
    if (freed.length > 0) await options.onFreed?.(freed);
    return { digests: freed.length, copies, freed };
  });
}

/** Deletes the copies of `digest` in `stores`, good and quarantined ones; returns how many good ones. */
export async function removeCopies(stores: PartStore[], digest: string): Promise<number> {
  let copies = 0;
  for (const store of stores) {
    try {
      if (await store.remove(digest)) copies++;
      const quarantined = store.quarantinePathOf(digest);
      await store.io(() => Deno.remove(quarantined)).catch((error) => {
        if (error instanceof StoreStalledError) throw error;
      });
    } catch (error) {
      // A stalled disk keeps its copy, for a later repair to find unused; the others go.
      if (!(error instanceof StoreStalledError)) throw error;
    }
  }
  return copies;
}

/**
 * The store of instance `id` (ADDR:PORT, a cluster in etcd) when it is one of
 * the instances of data directory `dir`, whose instances listen on `host`.
 */
export function hostStoreOf(dir: string, host: string): (id: string) => PartStore | undefined {
  return (id) => {
    const colon = id.lastIndexOf(":");
    if (colon < 0 || id.slice(0, colon) !== host) return undefined;
    return new PartStore(dataPaths(dir).instanceDir(id.slice(colon + 1)), {
      deadlineMs: STORE_STALL_MS,
    });
  };
}

/** The part stores of every instance with storage in the data directory. */
export async function storesOnHost(dir: string): Promise<PartStore[]> {
  const paths = dataPaths(dir);
  return (await instancesWithStorage(dir)).map((id) =>
    new PartStore(paths.instanceDir(id), { deadlineMs: STORE_STALL_MS })
  );
}

/**
 * How many copies of a part the stores hold, provided none was stored or
 * touched (PartStore.touch) after `since`; undefined if one was.
 */
export async function untouchedCopies(
  stores: PartStore[],
  digest: string,
  since: number,
): Promise<number | undefined> {
  let held = 0;
  for (const store of stores) {
    const path = store.pathOf(digest);
    const mtime = await store.io(() => Deno.stat(path)).then((i) => i.mtime, () => undefined);
    if (mtime === undefined) continue;
    if (mtime === null || mtime.getTime() > since) return undefined;
    held++;
  }
  return held;
}
