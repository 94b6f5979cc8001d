/**
 * Suggesting what a person meant: the known word nearest to a mistyped one
 * (a command, a flag, a file name), by edit distance with swapped neighbours
 * counted as one edit, or by a unique prefix.
 */

/** The option nearest to `word` (edit distance at most 2, or a unique prefix), if any. */
export function closestMatch(word: string, options: readonly string[]): string | undefined {
  const prefixed = options.filter((o) => word.length >= 2 && o.startsWith(word));
  if (prefixed.length === 1) return prefixed[0];
  const best = options
    .map((option) => ({ option, d: editDistance(word, option) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.min(2, Math.max(1, word.length - 2)) ? best.option : undefined;
}

/**
 * Edit distance where inserting, deleting or changing a character, or
 * swapping two neighbours ("fecth"), each cost 1 (optimal string alignment).
 */
export function editDistance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}
