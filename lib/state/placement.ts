/**
 * Placement: rendezvous (highest-random-weight) hashing of a part's digest over
 * instance ids. Each instance gets a pseudo-random weight per part; the R
 * highest weights hold the part. Deterministic, even, and when an instance
 * joins or leaves only the parts it wins or held move.
 */

function _fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function _hashString(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return _fmix32(h);
}

/** The weight of instance `id` for the part with this digest (a 53-bit integer). */
export function placementWeight(digest: string, id: string): number {
  const d1 = parseInt(digest.slice(0, 8), 16) >>> 0;
  const d2 = parseInt(digest.slice(8, 16), 16) >>> 0;
  const high = _fmix32(d1 ^ _hashString(id, 0x9e3779b9));
  const low = _fmix32(d2 ^ _hashString(id, 0x7f4a7c15)) >>> 11;
  return high * 2 ** 21 + low;
}

/** All instance ids ordered by preference for this digest, best first. */
export function rankInstances(digest: string, ids: readonly string[]): string[] {
  return ids
    .map((id) => ({ id, weight: placementWeight(digest, id) }))
    .sort((a, b) => b.weight - a.weight || (a.id < b.id ? -1 : 1))
    .map((entry) => entry.id);
}

/** The R instances that should hold the part with this digest. */
export function placeReplicas(digest: string, ids: readonly string[], replicas: number): string[] {
  if (replicas > ids.length) {
    throw new RangeError(`Cannot place ${replicas} replicas on ${ids.length} instances`);
  }
  return rankInstances(digest, ids).slice(0, replicas);
}

/**
 * All instance ids ordered by preference for this digest, with failure
 * domains: the first places go to the best-ranked instance of each distinct
 * domain (as HDFS spreads replicas over racks), so any R first places span
 * min(R, domains) domains; the rest follow in plain rank order. With one
 * domain this is rankInstances() exactly.
 */
export function rankAcrossDomains(
  digest: string,
  ids: readonly string[],
  domainOf: (id: string) => string,
): string[] {
  const ranked = rankInstances(digest, ids);
  const seen = new Set<string>();
  const first: string[] = [];
  const rest: string[] = [];
  for (const id of ranked) {
    const domain = domainOf(id);
    if (seen.has(domain)) {
      rest.push(id);
    } else {
      seen.add(domain);
      first.push(id);
    }
  }
  return [...first, ...rest];
}

/** The R instances that should hold the part, spread over as many failure domains as exist. */
export function placeAcrossDomains(
  digest: string,
  ids: readonly string[],
  replicas: number,
  domainOf: (id: string) => string,
): string[] {
  if (replicas > ids.length) {
    throw new RangeError(`Cannot place ${replicas} replicas on ${ids.length} instances`);
  }
  return rankAcrossDomains(digest, ids, domainOf).slice(0, replicas);
}
