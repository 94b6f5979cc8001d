/**
 * A read answered from memory for a while: settings an instance checks on
 * every request (the writers policy, the operator's key) but that change
 * rarely are read again only once the last answer is older than the given
 * time. Concurrent callers share one read; a failed read is not kept. With
 * `staleOnError`, a failed read answers with the last value read, when there
 * is one: a store out of reach (etcd without quorum) cannot be changed
 * either, so that value is still the one in force.
 */
export function cachedRead<T>(
  read: () => Promise<T>,
  ttlMs: number,
  options: { staleOnError?: boolean } = {},
): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  let good: { value: T } | undefined;
  const fresh = async (): Promise<T> => {
    try {
      const value = await read();
      good = { value };
      return value;
    } catch (error) {
      if (options.staleOnError && good) return good.value;
      throw error;
    }
  };
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) {
      const value = fresh();
      last = { at: now, value };
      value.catch(() => {
        if (last?.value === value) last = undefined;
      });
    }
    return last.value;
  };
}
