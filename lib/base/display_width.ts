/**
 * How many terminal columns text takes, for lining up columns and fitting a
 * line to the screen. JavaScript's `length` counts UTF-16 units: a CJK
 * character (two columns) counts one, an emoji outside the BMP counts two
 * whatever it shows as, and a combining accent (no column of its own) counts
 * one, so padded columns drift and "fitted" lines wrap. Here each grapheme
 * (what the eye sees as one character) takes the columns a terminal gives it:
 * East Asian Wide and Fullwidth characters and emoji two, combining marks,
 * format characters and controls none, everything else one. This is the
 * wcwidth rule terminals follow; a few emoji sequences (flags, ZWJ families)
 * differ between terminals, and are counted as two here.
 */

/** East Asian Wide (W) and Fullwidth (F) ranges outside the emoji blocks, from Unicode 15. */
const _WIDE_RANGES: readonly (readonly [number, number])[] = [
  [0x1100, 0x115f], // Hangul Jamo initial consonants
  [0x2329, 0x232a],
  [0x2e80, 0x303e], // CJK radicals, Kangxi, ideographic description, CJK symbols
  [0x3041, 0x33ff], // Hiragana, Katakana, Bopomofo, Hangul compatibility, CJK compatibility
  [0x3400, 0x4dbf], // CJK Extension A
  [0x4e00, 0x9fff], // CJK Unified Ideographs
  [0xa000, 0xa4cf], // Yi
  [0xa960, 0xa97f], // Hangul Jamo Extended-A
  [0xac00, 0xd7a3], // Hangul syllables
  [0xf900, 0xfaff], // CJK compatibility ideographs
  [0xfe10, 0xfe19], // vertical forms
  [0xfe30, 0xfe6f], // CJK compatibility forms, small form variants
  [0xff00, 0xff60], // fullwidth forms
  [0xffe0, 0xffe6],
  [0x16fe0, 0x16fe4],
  [0x17000, 0x18cff], // Tangut
  [0x1b000, 0x1b2ff], // Kana supplement, Nushu
  [0x1f300, 0x1f64f], // pictographs and emoticons
  [0x1f900, 0x1f9ff], // supplemental symbols and pictographs
  [0x20000, 0x2fffd], // CJK Extensions B-F
  [0x30000, 0x3fffd], // CJK Extension G
];

/** Characters that take no column: combining marks, format characters (ZWJ, ZWSP), controls. */
const _ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}\p{Cc}\u1160-\u11ff]$/u;
const _EMOJI_PRESENTATION = /\p{Emoji_Presentation}|\uFE0F/u;
/** Text every character of which takes exactly one column: the common case, checked fast. */
const _NARROW_ONLY = /^[\x20-\x7e]*$/;

let _segmenterMade: Intl.Segmenter | undefined;

/** Made on first use: building one loads ICU's break rules, about 20 ms at every start. */
function _segmenter(): Intl.Segmenter {
  return _segmenterMade ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
}

function _isWide(code: number): boolean {
  let low = 0;
  let high = _WIDE_RANGES.length - 1;
  while (low <= high) {
    const mid = (low + high) >> 1;
    const [start, end] = _WIDE_RANGES[mid]!;
    if (code < start) high = mid - 1;
    else if (code > end) low = mid + 1;
    else return true;
  }
  return false;
}

/** Columns one grapheme takes: its first visible character decides, marks after it take none. */
function _graphemeWidth(grapheme: string): number {
  if (_EMOJI_PRESENTATION.test(grapheme)) return 2;
  for (const char of grapheme) {
    if (_ZERO_WIDTH.test(char)) continue;
    return _isWide(char.codePointAt(0)!) ? 2 : 1;
  }
  return 0;
}

/** Terminal columns `text` takes (no escape codes in it; see terminal.ts visibleLength). */
export function displayWidth(text: string): number {
  if (_NARROW_ONLY.test(text)) return text.length;
  let width = 0;
  for (const { segment } of _segmenter().segment(text)) width += _graphemeWidth(segment);
  return width;
}

/** `text` padded with spaces on the right to `columns` terminal columns. */
export function padEndColumns(text: string, columns: number): string {
  const width = displayWidth(text);
  return width >= columns ? text : text + " ".repeat(columns - width);
}

/** `text` padded with spaces on the left to `columns` terminal columns. */
export function padStartColumns(text: string, columns: number): string {
  const width = displayWidth(text);
  return width >= columns ? text : " ".repeat(columns - width) + text;
}

/**
 * The longest start of `text` that fits in `columns` terminal columns, cut
 * between graphemes (never inside a wide character or before its accents).
 */
export function truncateColumns(text: string, columns: number): string {
  if (displayWidth(text) <= columns) return text;
  let out = "";
  let width = 0;
  for (const { segment } of _segmenter().segment(text)) {
    const next = _graphemeWidth(segment);
    if (width + next > columns) break;
    out += segment;
    width += next;
  }
  return out;
}
