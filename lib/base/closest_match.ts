/**
 * Suggesting what a person meant: the known word nearest to a mistyped one
 * (a command, a flag, a file name), by edit distance with swapped neighbours
 * counted as one edit, or by a unique prefix. Cheap over many options: a
 * name whose length alone puts it out of reach costs one comparison, and
 * the distance is worked out only as far as the limit (a typo checked
 * against 100,000 names of 200 characters takes milliseconds, not minutes).
 */

/** The option nearest to `word` (edit distance at most 2, or a unique prefix), if any. */
export function closestMatch(word: string, options: readonly string[]): string | undefined {
  let prefixed: string | undefined;
  let prefixes = 0;
  if (word.length >= 2) {
    for (const option of options) {
      if (option.startsWith(word) && prefixes++ === 0) prefixed = option;
    }
  }
  if (prefixes === 1) return prefixed;
  const limit = Math.min(2, Math.max(1, word.length - 2));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const option of options) {
    if (Math.abs(option.length - word.length) >= bestDistance) continue;
    const d = editDistance(word, option, bestDistance - 1);
    if (d < bestDistance) {
      best = option;
      bestDistance = d;
      if (d === 0) break;
    }
  }
  return best;
}

/**
 * Edit distance where inserting, deleting or changing a character, or
 * swapping two neighbours ("fecth"), each cost 1 (optimal string alignment).
 * With `max`, any distance above it comes back as max + 1: only the cells
 * within `max` of the table's diagonal are worked out (the others are past
 * it anyway), and the work stops at the first row with none within reach.
 */
export function editDistance(a: string, b: string, max = Infinity): number {
  // What both start or end with costs nothing: the table covers the rest.
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let end = 0;
  while (
    end < a.length - start && end < b.length - start &&
    a[a.length - 1 - end] === b[b.length - 1 - end]
  ) end++;
  if (start > 0 || end > 0) {
    a = a.slice(start, a.length - end);
    b = b.slice(start, b.length - end);
  }
  if (Math.abs(a.length - b.length) > max) return max + 1;
  const out = Math.min(max + 1, a.length + b.length + 1);
  const width = b.length + 1;
  // Three rows, reused in turn; a row holds its band and, just outside it,
  // `out` where the next row reads.
  let [before, previous, row] = _rows(width, out);
  for (let j = 0; j < width && j <= max; j++) previous[j] = j;
  let previousLeast = 0;
  for (let i = 1; i <= a.length; i++) {
    const from = Math.max(1, i - max);
    const to = Math.min(b.length, i + max);
    row[from - 1] = i <= max ? i : out;
    if (to + 1 < width) row[to + 1] = out;
    let rowLeast = row[from - 1]!;
    for (let j = from; j <= to; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let cell = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + cost, out);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        cell = Math.min(cell, before[j - 2]! + 1);
      }
      row[j] = cell;
      if (cell < rowLeast) rowLeast = cell;
    }
    // Every later cell comes from this row's or, by a swap, the row before's.
    if (rowLeast >= out && previousLeast >= out) return out;
    previousLeast = rowLeast;
    [before, previous, row] = [previous, row, before];
  }
  return previous[b.length]!;
}

/** The rows of editDistance(), kept from call to call (a suggestion compares thousands of names). */
let _scratch: [Float64Array, Float64Array, Float64Array] = [
  new Float64Array(0),
  new Float64Array(0),
  new Float64Array(0),
];

function _rows(width: number, fill: number): [Float64Array, Float64Array, Float64Array] {
  if (_scratch[0].length < width) {
    const length = Math.max(width, 2 * _scratch[0].length);
    _scratch = [new Float64Array(length), new Float64Array(length), new Float64Array(length)];
  }
  const [a, b, c] = _scratch;
  return [
    a.subarray(0, width).fill(fill),
    b.subarray(0, width).fill(fill),
    c.subarray(0, width).fill(fill),
  ];
}
