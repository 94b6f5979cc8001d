/**
 * An exclusive lock on a file, held across processes (flock through
 * Deno.FsFile.lock) and within this process (a promise chain, because two
 * handles in one process must not both think they hold it).
 */
import { deadline } from "./deadline.ts";

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

/**
 * Takes an exclusive lock on `path` (created if need be) for the life of one
 * job, waiting while another process holds it; `onWaiting` is called once if
 * that takes a moment. The returned release deletes the file while still
 * holding the lock; a waiter that then gets the lock on the deleted file sees
 * the path gone or pointing elsewhere and starts over.
 */
export async function acquireFileLock(
  path: string,
  options: { signal?: AbortSignal | undefined; onWaiting?: () => void } = {},
): Promise<() => Promise<void>> {
  let warned = false;
  while (true) {
    options.signal?.throwIfAborted();
    const file = await Deno.open(path, { read: true, write: true, create: true });
    try {
      const locked = file.lock(true);
      const stopWaiting = deadline(200, () => {
        if (!warned) options.onWaiting?.();
        warned = true;
      });
      try {
        if (options.signal) {
          const signal = options.signal;
          await new Promise<void>((resolve, reject) => {
            const onAbort = () => reject(signal.reason);
            signal.addEventListener("abort", onAbort, { once: true });
            locked.then(resolve, reject).finally(() =>
              signal.removeEventListener("abort", onAbort)
            );
          });
        } else {
          await locked;
        }
      } finally {
        stopWaiting();
      }
      const held = await file.stat();
      const current = await Deno.lstat(path).catch(() => undefined);
      if (current?.ino !== held.ino || current?.dev !== held.dev) {
        // Released and deleted by its last holder while we waited: start over.
        file.close();
        continue;
      }
    } catch (error) {
      file.close();
      throw error;
    }
    return async () => {
      await Deno.remove(path).catch(() => {});
      file.close();
    };
  }
}
