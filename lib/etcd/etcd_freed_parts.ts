/**
 * Freeing copies on every host after a delete or a replace. The instance
 * that takes the change frees the copies on its own host (part_gc.ts, under
 * the parts lock) and then announces, under `freed/`, the digests it found
 * unused and the revision it found them unused at (announceFreed). Every
 * instance follows `freed/` (followFreed) and frees its own copies of those
 * digests under the parts lock, unless an entry written since that revision
 * refers to them: at the announced revision none did, and a publish adds a
 * reference only under the same lock, after checking its copies, so only
 * the entries written since need reading (EtcdManifestStore.referencedSince).
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
/** Digests per announcement key: 65 bytes each keeps a key near 130 KB, under etcd's limit. */
export const DIGESTS_PER_KEY = 2048;
/** Announcements heard within this long are freed together (one lock, one read). */
export const FREE_BATCH_MS = 250;
/** Pause before a broken watch of `freed/` is opened again. */
const FOLLOW_RETRY_MS = 1_000;

/** Digests found unused at `revision`. */
export interface FreedDigests {
  revision: number;
  digests: string[];
}

/** Announces `digests`, unused at `revision`, to every instance of the cluster. */
export async function announceFreed(
  etcd: EtcdClient,
  keys: ClusterKeys,
  freed: FreedDigests,
): Promise<void> {
  if (freed.digests.length === 0) return;
  const lease = await etcd.grantLease(FREED_TTL_SECONDS);
  const id = `${freed.revision}-${crypto.randomUUID()}`;
  for (let start = 0; start < freed.digests.length; start += DIGESTS_PER_KEY) {
    const digests = freed.digests.slice(start, start + DIGESTS_PER_KEY);
    await etcd.put(
      keys.freedKey(`${id}-${start / DIGESTS_PER_KEY}`),
      JSON.stringify({ revision: freed.revision, digests }),
      lease,
    );
  }
}

/** An announcement's value, checked; undefined when it is not one. */
export function parseFreed(value: string): FreedDigests | undefined {
  try {
    const parsed = JSON.parse(value) as Record<string, unknown> | null;
    const { revision, digests } = parsed ?? {};
    if (
      typeof revision !== "number" || !Number.isSafeInteger(revision) || revision < 0 ||
      !Array.isArray(digests) ||
      !digests.every((d) => typeof d === "string" && DIGEST_PATTERN.test(d))
    ) {
      return undefined;
    }
    return { revision, digests: digests as string[] };
  } catch {
    return undefined;
  }
}

/**
 * Calls `free` with every announcement under `freed/`, those standing when
 * it starts and those made after, until `signal` aborts. Announcements heard
 * together are merged (the earliest revision, every digest). A `free` that
 * throws is tried again with the next batch; the watch resumes after the
 * last revision seen when its stream breaks.
 */
export async function followFreed(
  etcd: EtcdClient,
  keys: ClusterKeys,
  free: (freed: FreedDigests) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  let pending: FreedDigests | undefined;
  const add = (value: string) => {
    const freed = parseFreed(value);
    if (!freed) return;
    pending = pending
      ? {
        revision: Math.min(pending.revision, freed.revision),
        digests: [...new Set([...pending.digests, ...freed.digests])],
      }
      : freed;
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
      add(JSON.stringify(batch));
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
        for (const kv of standing.kvs) add(kv.value);
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
        for (const { type, kv } of batch.value.events) if (type === "PUT") add(kv.value);
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
