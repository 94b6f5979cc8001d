/**
 * What a terminal can show: whether a stream is one, whether to colour, its
 * size, and the few ANSI sequences the progress bar and the live view use.
 */
import { displayWidth, truncateColumns } from "./display_width.ts";

export const ESC = "\x1b";
/** Clears from the cursor to the end of the line. */
export const CLEAR_LINE = `${ESC}[K`;
/** Clears from the cursor to the end of the screen. */
export const CLEAR_BELOW = `${ESC}[J`;
export const CURSOR_HOME = `${ESC}[H`;
export const ENTER_ALT_SCREEN = `${ESC}[?1049h`;
export const LEAVE_ALT_SCREEN = `${ESC}[?1049l`;

/** The default size when a stream is not a terminal or will not say. */
export const FALLBACK_SIZE = { columns: 80, rows: 24 } as const;

export type Style = "bold" | "dim" | "red" | "green" | "yellow" | "blue" | "cyan" | "magenta";

const _CODES: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
};

export function isTerminal(stream: { isTerminal(): boolean }): boolean {
  try {
    return stream.isTerminal();
  } catch {
    return false;
  }
}

/**
 * Colour only on a terminal, never with NO_COLOR set to anything non-empty
 * (no-color.org), and never on TERM=dumb.
 */
export function colorEnabled(stream: { isTerminal(): boolean }): boolean {
  if ((Deno.env.get("NO_COLOR") ?? "") !== "") return false;
  if (Deno.env.get("TERM") === "dumb") return false;
  return isTerminal(stream);
}

/** Wraps text in one style's on/off codes when colour is on. */
export function paint(text: string, style: Style, color: boolean): string {
  if (!color || text === "") return text;
  const [on, off] = _CODES[style];
  return `${ESC}[${on}m${text}${ESC}[${off}m`;
}

// deno-lint-ignore no-control-regex
const _ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

// deno-lint-ignore no-control-regex
const _ANSI_SPLIT = /(\x1b\[[0-9;?]*[A-Za-z])/;

export function stripAnsi(text: string): string {
  return text.replace(_ANSI, "");
}

/** The terminal columns a line takes (escape codes take none, a CJK character two). */
export function visibleLength(text: string): number {
  return displayWidth(stripAnsi(text));
}

/** Cuts a line to `columns` terminal columns, keeping escape codes intact. */
export function truncateVisible(text: string, columns: number): string {
  if (visibleLength(text) <= columns) return text;
  let out = "";
  let shown = 0;
  // Odd pieces are the escape codes, even ones the text between them.
  for (const [index, piece] of text.split(_ANSI_SPLIT).entries()) {
    if (index % 2 === 1) {
      out += piece;
      continue;
    }
    const cut = truncateColumns(piece, columns - shown);
    out += cut;
    shown += displayWidth(cut);
    if (cut !== piece) break;
  }
  // Close any style left open by the cut.
  return text.includes(ESC) ? out + `${ESC}[0m` : out;
}

/** Pads a line with spaces to `width` visible characters. */
export function padVisible(text: string, width: number): string {
  const length = visibleLength(text);
  return length >= width ? text : text + " ".repeat(width - length);
}

/** The terminal size behind a stream, or FALLBACK_SIZE. */
export function terminalSize(): { columns: number; rows: number } {
  try {
    const size = Deno.consoleSize();
    if (size.columns > 0 && size.rows > 0) return size;
  } catch { /* not a terminal */ }
  return { ...FALLBACK_SIZE };
}

const _encoder = new TextEncoder();

/** Writes all of `text` to a terminal stream at once, so a frame is never half drawn. */
export function writeAllSync(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = _encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += stream.writeSync(bytes.subarray(done));
}
