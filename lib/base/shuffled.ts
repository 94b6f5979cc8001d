/**
 * A uniform shuffle (Fisher-Yates): clients ask servers in random order so
 * that many of them spread their requests, and no server is always first.
 */

/** A copy of `items` in random order, every order equally likely. */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
