/**
 * An exclusive lock on a file, held across processes (flock through
 * Deno.FsFile.lock) and within this process (a promise chain, because two
 * handles in one process must not both think they hold it).
 */
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
