/**
 * Makes text from the network or the disk safe to print on a terminal. A
 * name or owner is whatever its uploader (or a lying server) chose: raw, an
 * ESC sequence can clear the screen or set the window title, a C1 control
 * can start one on some terminals, and a bidirectional override makes
 * "exe.txt" read as "txt.exe". Every such character is shown as a visible
 * escape (`\x1b`, `\u202e`) instead, so what is printed is what is stored.
 */

/**
 * C0 and C1 controls, DEL, the bidirectional marks, embeddings, overrides and
 * isolates, and the line and paragraph separators (which break a line).
 */
// deno-lint-ignore no-control-regex
const _UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** True when `text` holds a character that printable() would escape. */
export function hasUnprintable(text: string): boolean {
  _UNPRINTABLE.lastIndex = 0;
  return _UNPRINTABLE.test(text);
}

/** `text` with every control and bidirectional character shown as an escape. */
export function printable(text: string): string {
  return text.replace(_UNPRINTABLE, (char) => {
    const code = char.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** `text` as one word of a shell command to type (quoted when it must be), and printable. */
export function shellWord(text: string): string {
  if (/^[\w@%+=:,./-]+$/.test(text)) return text;
  return printable(`'${text.replaceAll("'", `'\\''`)}'`);
}
