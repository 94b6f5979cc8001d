/**
 * Freeing copies on every host. Two kinds of change leave copies on other
 * hosts that nothing needs:
 *
 * 1. A delete or a replace: the instance that takes it frees the copies on
 *    its own host (part_gc.ts, under the parts lock) and announces the
 *    digests it found unused.
 * 2. A repair that unlists surplus copies: it deletes those on its own host
 *    (repair_manifest.ts, under the parts lock) and announces the others as
 *    instance and digest.
 * 3. A repair that finds copies of parts no file uses (uploads that never
 *    published) on other hosts' instances: it announces them with its
 *    --unused-after cutoff, and each is deleted only if its host finds it
 *    untouched since then (repair.ts, as it does for its own host's).
 *
 * Each announcement, under `freed/`, carries the revision at which no entry
 * used those digests, or listed those copies (announceFreed). Each host's
 * supervisor, and an instance started on its own, follows `freed/`
 * (followFreed) and deletes its copies, unless an entry written since that
 * revision uses the digest or lists the copy: at that revision none did, so
 * only the entries written since need reading (EtcdManifestStore.writtenSince).
 * Digests and unused copies are freed under the parts lock (a publish checks
 * its copies under it); unlisted copies under the repair lock as well, since
 * a repair may list again a copy it finds.
 *
 * An announcement lives FREED_TTL_SECONDS (a lease): an instance down
 * longer, or one whose watch lost history, leaves its copies to a repair on
 * its host (`fts repair --unused-after`), as before.
 */
import type { EtcdClient } from "./etcd_client.ts";
import type { ClusterKeys } from "./etcd_keys.ts";
import { sleep } from "../base/sleep.ts";
import { DIGEST_PATTERN } from "../hash/digest_patterns.ts";

/** How long an announcement stays for instances that were not following when it was made. */
export const FREED_TTL_SECONDS = 600;
/** Digests or copies per announcement key: a key stays near 130-200 KB, under etcd's limit. */
export const DIGESTS_PER_KEY = 2048;
/** Announcements heard within this long are freed together (one lock, one read). */
export const FREE_BATCH_MS = 250;
/** Pause before a broken watch of `freed/` is opened again. */
const FOLLOW_RETRY_MS = 1_000;

/** A copy on one instance: its id (ADDR:PORT) and the part's digest. */
export interface CopyOf {
  id: string;
  digest: string;
}

/** What no entry used or listed at `revision`. */
export interface Freed {
  revision: number;
  /** Digests no entry used: every copy goes. */
  digests: string[];
  /** Copies no entry listed. */
  copies: CopyOf[];
  /** Copies of digests no entry used: each goes if untouched since `untouchedSince`. */
  unused: CopyOf[];
  /** Milliseconds since the epoch; set when `unused` is not empty. */
  untouchedSince?: number;
}

/** Announces what `freed` says to every host of the cluster. */
export async function announceFreed(
  etcd: EtcdClient,
  keys: ClusterKeys,
  freed: Freed,
): Promise<void> {
  const { revision, digests, copies, unused, untouchedSince } = freed;
  if (digests.length + copies.length + unused.length === 0) return;
  if (unused.length > 0 && untouchedSince === undefined) {
    throw new TypeError("Unused copies are announced with the time they must be untouched since");
  }
  const lease = await etcd.grantLease(FREED_TTL_SECONDS);
  const id = `${revision}-${crypto.randomUUID()}`;
  let n = 0;
  const put = async (fields: Record<string, unknown>) =>
    await etcd.put(keys.freedKey(`${id}-${n++}`), JSON.stringify({ revision, ...fields }), lease);
  for (let start = 0; start < digests.length; start += DIGESTS_PER_KEY) {
    await put({ digests: digests.slice(start, start + DIGESTS_PER_KEY) });
  }
  for (let start = 0; start < copies.length; start += DIGESTS_PER_KEY) {
    await put({ copies: copies.slice(start, start + DIGESTS_PER_KEY) });
  }
  for (let start = 0; start < unused.length; start += DIGESTS_PER_KEY) {
    await put({ unused: unused.slice(start, start + DIGESTS_PER_KEY), untouchedSince });
  }
}

/** An announcement's value, checked; undefined when it is not one. */
export function parseFreed(value: string): Freed | undefined {
  let parsed: Record<string, unknown> | null;
  try {
    parsed = JSON.parse(value) as Record<string, unknown> | null;
  } catch {
    return undefined;
  }
  const { revision, digests = [], copies = [], unused = [], untouchedSince } = parsed ?? {};
  const isDigest = (d: unknown) => typeof d === "string" && DIGEST_PATTERN.test(d);
  const isCopies = (list: unknown): list is CopyOf[] =>
    Array.isArray(list) &&
    list.every((c) =>
      typeof c === "object" && c !== null && typeof c.id === "string" && isDigest(c.digest)
    );
  const isTime = (t: unknown): t is number => typeof t === "number" && Number.isSafeInteger(t);
  if (
    typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < 0 ||
    !Array.isArray(digests) || !digests.every(isDigest) || !isCopies(copies) ||
    !isCopies(unused) || (unused.length > 0 && !isTime(untouchedSince))
  ) {
    return undefined;
  }
  const plain = (list: CopyOf[]) => list.map(({ id, digest }) => ({ id, digest }));
  return {
    revision,
    digests: digests as string[],
    copies: plain(copies),
    unused: plain(unused),
    ...(unused.length > 0 ? { untouchedSince: untouchedSince as number } : {}),
  };
}

/** Both announcements as one: the earlier revision and cutoff, every digest and copy. */
function _merged(a: Freed, b: Freed): Freed {
  const both = (x: CopyOf[], y: CopyOf[]) => {
    const copies = new Map<string, CopyOf>();
    for (const copy of [...x, ...y]) copies.set(`${copy.id} ${copy.digest}`, copy);
    return [...copies.values()];
  };
  const cutoffs = [a.untouchedSince, b.untouchedSince].filter((t) => t !== undefined);
  return {
    revision: Math.min(a.revision, b.revision),
    digests: [...new Set([...a.digests, ...b.digests])],
    copies: both(a.copies, b.copies),
    unused: both(a.unused, b.unused),
    ...(cutoffs.length > 0 ? { untouchedSince: Math.min(...cutoffs) } : {}),
  };
}

/**
 * Calls `free` with every announcement under `freed/`, those standing when
 * it starts and those made after, until `signal` aborts. Announcements heard
 * together are merged (the earliest revision and cutoff, every digest and copy). A
 * `free` that throws is tried again with the next batch; the watch resumes
 * after the last revision seen when its stream breaks.
 */
export async function followFreed(
  etcd: EtcdClient,
  keys: ClusterKeys,
  free: (freed: Freed) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  let pending: Freed | undefined;
  const add = (freed: Freed | undefined) => {
    if (freed) pending = pending ? _merged(pending, freed) : freed;
  };
  // A free that failed is tried again no sooner than FOLLOW_RETRY_MS after.
  let retryAt = 0;
  const flush = async () => {
    const batch = pending;
    pending = undefined;
    if (!batch) return;
    try {
      await free(batch);
    } catch {
      // etcd or the lock out of reach: kept for the next try.
      add(batch);
      retryAt = performance.now() + FOLLOW_RETRY_MS;
    }
  };
  const gather = () =>
    sleep(Math.max(FREE_BATCH_MS, retryAt - performance.now()), signal).then(() => undefined);
  let seen: number | undefined;
  while (!signal.aborted) {
    // One per watch stream: leaving the stream closes it.
    const stream = new AbortController();
    const stop = () => stream.abort();
    signal.addEventListener("abort", stop, { once: true });
    try {
      if (seen === undefined) {
        const standing = await etcd.range(keys.freed, { prefix: true });
        for (const kv of standing.kvs) add(parseFreed(kv.value));
        seen = standing.revision;
        await flush();
      }
      const events = etcd.watch(keys.freed, seen + 1, stream.signal)[Symbol.asyncIterator]();
      let next = events.next();
      next.catch(() => {});
      while (!signal.aborted) {
        // Waits for more only while nothing is pending: what is pending goes after a short gather.
        const batch = pending ? await Promise.race([next, gather()]) : await next;
        if (batch === undefined) {
          await flush();
          continue;
        }
        if (batch.done) break;
        next = events.next();
        next.catch(() => {});
        if (batch.value.compactRevision !== undefined) {
          // History lost: read what stands again.
          seen = undefined;
          break;
        }
        for (const { type, kv } of batch.value.events) {
          if (type === "PUT") add(parseFreed(kv.value));
        }
        seen = batch.value.revision;
      }
    } catch {
      // A broken stream or etcd out of reach: opened again below.
    } finally {
      signal.removeEventListener("abort", stop);
      stream.abort();
    }
    if (signal.aborted) return;
    await flush();
    await sleep(FOLLOW_RETRY_MS, signal);
  }
}
