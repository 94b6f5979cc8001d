/**
 * A destination fetch may not write in (a read-only mount, a directory
 * without write permission) can still be checked: when its NAME is already
 * this file, whole and right, there is nothing to write, and the fetch ends
 * as one that found every part present (as rsync does with an up-to-date
 * tree). Only a file that is entirely there and hashes right part by part
 * counts; anything else is reported as the write error it is.
 */
import { lstatOrUndefined } from "../base/fs_util.ts";
import { acquireFileLock } from "../base/lock.ts";
import { basename, dirname } from "../base/paths.ts";
import type { HashPool } from "../hash/hash_pool.ts";
import type { FileEntry } from "../state/manifest.ts";
import {
  DestinationCheck,
  type DestinationCounters,
  localCheck,
  RejectedParts,
} from "./destination_check.ts";
import { FetchError } from "./fetch_error.ts";
import { Bitmap } from "./fetch_state.ts";

/** Whether `error` says the destination cannot be written (rather than something else failed). */
export function isUnwritable(error: unknown): boolean {
  return error instanceof Deno.errors.PermissionDenied ||
    (error as { code?: unknown } | null)?.code === "EROFS";
}

/**
 * Whether `finalPath` holds the whole file, each part hashed right, read
 * without writing anything. Counts what it checked and found into `counters`.
 */
export async function holdsWholeFile(options: {
  entry: FileEntry;
  finalPath: string;
  hashes: HashPool;
  verify: boolean;
  counters: DestinationCounters;
  signal?: AbortSignal | undefined;
}): Promise<boolean> {
  const { entry, finalPath, counters } = options;
  const info = lstatOrUndefined(finalPath);
  if (!info?.isFile || info.size !== entry.size) return false;
  const local = localCheck(entry, options.verify);
  counters.localDigest = local.algorithm;
  const check = new DestinationCheck({ entry, hashes: options.hashes, local, counters });
  const rejected = new RejectedParts();
  const stop = options.signal ?? new AbortController().signal;
  const whole = await check.checkWholeParts({
    workPath: finalPath,
    indexes: entry.parts.map((_, index) => index),
    verified: new Bitmap(entry.parts.length),
    rejected,
    stop,
  });
  return whole && (await rejected.take()) === undefined;
}

/**
 * Takes the job lock at `lockPath`; when the destination cannot be written
 * (the lock file cannot be made) but `check.finalPath` already holds the whole
 * file, right, resolves undefined instead: the fetch is done. Else it throws
 * the write error, saying the file there needs writing.
 */
export async function lockUnlessDone(
  lockPath: string,
  lock: Parameters<typeof acquireFileLock>[1],
  check: Parameters<typeof holdsWholeFile>[0],
): Promise<(() => Promise<void>) | undefined> {
  try {
    return await acquireFileLock(lockPath, lock);
  } catch (error) {
    if (!isUnwritable(error)) throw error;
    if (await holdsWholeFile(check)) return undefined;
    const { finalPath } = check;
    const there = lstatOrUndefined(finalPath) === undefined
      ? "is not there yet"
      : "there is not this file whole and right";
    throw new FetchError(
      `Cannot write in ${dirname(finalPath)} (${(error as Error).message}), and ${
        basename(finalPath)
      } ${there}: it needs writing`,
      [],
      { cause: error },
    );
  }
}
