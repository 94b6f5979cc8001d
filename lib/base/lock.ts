/**
 * An exclusive lock on a file, held across processes (flock through
 * Deno.FsFile.lock) and within this process (a promise chain, because two
 * handles in one process must not both think they hold it).
 */
import { deadline } from "./deadline.ts";
import { lstatOrUndefined, removeQuietly } from "./fs_util.ts";

const _chains = new Map<string, Promise<void>>();

export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  const previous = _chains.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const chained = previous.then(() => mine);
  _chains.set(lockPath, chained);
  await previous;
  try {
    const file = await Deno.open(lockPath, { read: true, write: true, create: true });
    try {
      await file.lock(true);
      return await fn();
    } finally {
      // Closing the handle releases the flock even if unlock fails.
      await file.unlock().catch(() => {});
      file.close();
    }
  } finally {
    release();
    if (_chains.get(lockPath) === chained) _chains.delete(lockPath);
  }
}

/** Times a job lock is found released and deleted under us before giving up. */
export const MAX_LOCK_ATTEMPTS = 20;
/** The first wait before trying a lock again; it doubles up to LOCK_RETRY_MAX_MS. */
const LOCK_RETRY_FIRST_MS = 10;
const LOCK_RETRY_MAX_MS = 1_000;

/**
 * Takes an exclusive lock on `path` (created if need be) for the life of one
 * job, waiting while another process holds it; `onWaiting` is called once if
 * that takes a moment. The returned release deletes the file while still
 * holding the lock; a waiter that then gets the lock on the deleted file sees
 * the path gone or pointing elsewhere and starts over (a bounded number of
 * times, with a growing pause). A symbolic link or anything but a regular
 * file at `path` is refused, never followed: the lock must not create or
 * lock a file the link's planter chose.
 */
export async function acquireFileLock(
  path: string,
  options: { signal?: AbortSignal | undefined; onWaiting?: () => void } = {},
): Promise<() => Promise<void>> {
  let warned = false;
  let pauseMs = LOCK_RETRY_FIRST_MS;
  for (let attempt = 1;; attempt++) {
    options.signal?.throwIfAborted();
    const file = _openLockFile(path);
    try {
      // Synchronous where it cannot block (lstatOrUndefined says why): a
      // lock nobody holds is taken at once; a held one is waited for.
      if (!file.tryLockSync(true)) {
        await waitForLock(file, options.signal, () => {
          if (!warned) options.onWaiting?.();
          warned = true;
        });
      }
      const held = file.statSync();
      const current = lstatOrUndefined(path);
      if (current?.ino !== held.ino || current?.dev !== held.dev) {
        // Released and deleted by its last holder while we waited (or swapped
        // for a link, which the next open refuses): start over, within bounds.
        file.close();
        if (attempt >= MAX_LOCK_ATTEMPTS) {
          throw new Error(
            `Lock file ${path} changed under us ${attempt} times; is something replacing it?`,
          );
        }
        await new Promise<void>((resolve) => deadline(pauseMs, resolve));
        pauseMs = Math.min(2 * pauseMs, LOCK_RETRY_MAX_MS);
        continue;
      }
    } catch (error) {
      file.close();
      throw error;
    }
    return () => {
      removeQuietly(path);
      file.close();
      return Promise.resolve();
    };
  }
}

/**
 * acquireFileLock() without waiting: the release, or undefined when another
 * process holds the lock (or the lock file cannot be opened).
 */
export function tryFileLock(path: string): (() => void) | undefined {
  let file: Deno.FsFile;
  try {
    file = _openLockFile(path);
  } catch {
    return undefined;
  }
  const held = file.tryLockSync(true) ? file.statSync() : undefined;
  const current = held && lstatOrUndefined(path);
  if (held === undefined || current?.ino !== held.ino || current?.dev !== held.dev) {
    file.close();
    return undefined;
  }
  return () => {
    removeQuietly(path);
    file.close();
  };
}

/**
 * Waits for another process to release its flock on `file`, then holds it;
 * `onSlow` if that takes 200 ms.
 */
export async function waitForLock(
  file: Deno.FsFile,
  signal: AbortSignal | undefined,
  onSlow: () => void,
): Promise<void> {
  const locked = file.lock(true);
  const stopWaiting = deadline(200, onSlow);
  try {
    if (signal) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        locked.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
    } else {
      await locked;
    }
  } finally {
    stopWaiting();
  }
}

/**
 * Opens the regular file at `path`, creating it if absent, without following
 * a link: a new file is created exclusively (which fails on any link, even a
 * dangling one), and an existing path must be a regular file.
 */
function _openLockFile(path: string): Deno.FsFile {
  for (let attempt = 1;; attempt++) {
    try {
      return Deno.openSync(path, { read: true, write: true, createNew: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const info = lstatOrUndefined(path);
    if (info === undefined) {
      // Deleted between the two calls: create it again.
      if (attempt < MAX_LOCK_ATTEMPTS) continue;
      throw new Error(`Lock file ${path} vanished ${attempt} times as it was opened`);
    }
    if (info.isSymlink) {
      throw new Error(`Lock file ${path} is a symbolic link; remove it and try again`);
    }
    if (!info.isFile) {
      throw new Error(`Lock file ${path} is not a regular file; remove it and try again`);
    }
    try {
      // Not created: a link swapped in now is opened but never created, and
      // the holder's inode check above sees it is not the path's file.
      return Deno.openSync(path, { read: true, write: true });
    } catch (error) {
      // Released and deleted by its holder since the lstat: create it again.
      if (!(error instanceof Deno.errors.NotFound) || attempt >= MAX_LOCK_ATTEMPTS) throw error;
    }
  }
}
