/**
 * A read answered from memory for a while: settings an instance checks on
 * every request (the writers policy, the operator's key) but that change
 * rarely are read again only once the last answer is older than the given
 * time. Concurrent callers share one read; a failed read is not kept.
 */
export function cachedRead<T>(read: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) {
      const value = read();
      last = { at: now, value };
      value.catch(() => {
        if (last?.value === value) last = undefined;
      });
    }
    return last.value;
  };
}
