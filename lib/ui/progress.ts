/**
 * Progress for every command that moves bytes (fetch, preload, upload, repair,
 * scrub): a bar on a terminal, a plain line every few seconds otherwise, JSON
 * lines for scripts, nothing with --quiet. What was already present (a resumed
 * fetch) is counted apart: it is neither in the percentage of this run's work
 * nor in the speed, so a resume does not start at 70 % and crawl.
 *
 *     const progress = new Progress(reportMode({ quiet, json }));
 *     progress.update({ label: "fetch a.bin", bytesTotal, bytesDone, partsTotal, partsDone });
 *     progress.event("failover: part 3 ...", { type: "failover", part: 3 });
 *     progress.finish();
 */
import {
  CLEAR_LINE,
  colorEnabled,
  isTerminal,
  paint,
  terminalSize,
  truncateVisible,
  visibleLength,
  writeAllSync,
} from "../base/terminal.ts";
import { formatBytes, formatDuration } from "../base/units.ts";
import { printable } from "../base/printable.ts";

/** bar: redrawn in place on a terminal; plain: a line now and then; json: JSON lines. */
export type ReportMode = "bar" | "plain" | "json" | "quiet";

/** How often a plain or JSON progress line is printed. */
export const PLAIN_PROGRESS_INTERVAL_MS = 2_000;
/** The bar is redrawn at most this often. */
export const BAR_REDRAW_INTERVAL_MS = 100;
/** Speed is measured over this much recent time, so it follows changes. */
export const SPEED_WINDOW_MS = 5_000;

/** --quiet wins, then --json, then a bar when the stream (stderr) is a terminal. */
export function reportMode(
  options: { quiet?: boolean; json?: boolean },
  stream: { isTerminal(): boolean } = Deno.stderr,
): ReportMode {
  if (options.quiet) return "quiet";
  if (options.json) return "json";
  return isTerminal(stream) ? "bar" : "plain";
}

export interface ProgressState {
  /** What is being done to what: "fetch a.bin", "preload a.bin". */
  label: string;
  /** When set, shown instead of the numbers: "checking destination, 3.0 MiB hashed". */
  activity?: string;
  bytesTotal: number;
  /** Bytes this run has done (fetched and verified, stored, repaired). */
  bytesDone: number;
  /** Bytes found already in place before this run; counted apart. */
  bytesPresent?: number;
  /**
   * Bytes moved so far when that runs ahead of bytesDone (received, not yet
   * verified): the speed, the bar and the percentage follow it, so a fetch of
   * big parts moves smoothly instead of a part at a time.
   */
  bytesMoved?: number;
  partsTotal: number;
  partsDone: number;
  partsPresent?: number;
  /** Times a transfer continued on another replica. */
  failovers?: number;
  /** A few more words at the end: "2 bad copies". */
  note?: string;
}

/** The speed and time left, as the reporter measured them. */
export interface Rate {
  bytesPerSecond: number;
  /** Undefined while the speed is still unknown. */
  etaMs: number | undefined;
}

function _partsText(s: ProgressState): string {
  const present = s.partsPresent ?? 0;
  return `parts ${
    present > 0 ? `${present} present + ` : ""
  }${s.partsDone} done of ${s.partsTotal}` +
    ((s.failovers ?? 0) > 0 ? `, ${s.failovers} failed over` : "");
}

/** This run's bytes for the bar and the percentage: moved, but never below done or above the work. */
function _shown(s: ProgressState): number {
  const todo = Math.max(0, s.bytesTotal - (s.bytesPresent ?? 0));
  return Math.min(todo, Math.max(s.bytesDone, s.bytesMoved ?? 0));
}

function _percent(s: ProgressState): string {
  const todo = s.bytesTotal - (s.bytesPresent ?? 0);
  return todo > 0 ? `${Math.min(100, (_shown(s) / todo) * 100).toFixed(1)}%` : "100.0%";
}

function _etaText(rate: Rate): string {
  return rate.etaMs === undefined ? "ETA ?" : `ETA ${formatDuration(rate.etaMs)}`;
}

/** One line for logs: what a plain (non-terminal) report prints every few seconds. */
export function formatProgressLine(state: ProgressState, rate: Rate): string {
  // The label holds a file name: shown escaped, like every name.
  const s = { ...state, label: printable(state.label) };
  if (s.activity !== undefined) return `${s.label}: ${s.activity}`;
  const present = s.bytesPresent ?? 0;
  const todo = s.bytesTotal - present;
  return `${s.label}: ${formatBytes(_shown(s))}/${formatBytes(todo)} (${_percent(s)})` +
    (present > 0 ? ` + ${formatBytes(present)} already present` : "") +
    `, ${formatBytes(rate.bytesPerSecond)}/s, ${_etaText(rate)}, ${_partsText(s)}` +
    (s.note ? `, ${s.note}` : "");
}

/**
 * The terminal bar, fitted to `columns`. The bar covers the whole file: `=`
 * for bytes that were present, `#` for bytes done now, `-` for the rest.
 */
export function renderProgressBar(
  state: ProgressState,
  rate: Rate,
  columns: number,
  color = false,
): string {
  const s = { ...state, label: printable(state.label) };
  if (s.activity !== undefined) return truncateVisible(`${s.label}: ${s.activity}`, columns - 1);
  const present = s.bytesPresent ?? 0;
  const todo = s.bytesTotal - present;
  const partsPresent = s.partsPresent ?? 0;
  // Most important first; on a narrow terminal the last ones go.
  const fields = [
    `${_percent(s)} ${formatBytes(_shown(s))}/${formatBytes(todo)}`,
    `${formatBytes(rate.bytesPerSecond)}/s`,
    _etaText(rate),
    ...((s.failovers ?? 0) > 0 ? [`${s.failovers} failed over`] : []),
    ...(present > 0 ? [`+${formatBytes(present)} present`] : []),
    `parts ${partsPresent + s.partsDone}/${s.partsTotal}` +
    (partsPresent > 0 ? ` (${partsPresent} present)` : ""),
    ...(s.note ? [s.note] : []),
  ];
  const label = visibleLength(s.label);
  const room = columns - 1 - label - 4 - 10;
  while (fields.length > 1 && visibleLength(fields.join("  ")) > room) fields.pop();
  const numbers = fields.join("  ");
  const width = Math.max(10, Math.min(40, columns - 1 - label - 4 - visibleLength(numbers)));
  const scale = s.bytesTotal > 0 ? width / s.bytesTotal : 0;
  const presentCells = s.bytesTotal > 0 ? Math.round(present * scale) : 0;
  const doneCells = s.bytesTotal > 0
    ? Math.min(width - presentCells, Math.round((present + _shown(s)) * scale) - presentCells)
    : width;
  const bar = paint("=".repeat(presentCells), "cyan", color) +
    paint("#".repeat(Math.max(0, doneCells)), "green", color) +
    paint("-".repeat(Math.max(0, width - presentCells - doneCells)), "dim", color);
  return truncateVisible(`${paint(s.label, "bold", color)} [${bar}] ${numbers}`, columns - 1);
}

export interface ProgressOptions {
  /** Where output goes; stderr by default. */
  write?: (text: string) => void;
  now?: () => number;
  columns?: () => number;
  color?: boolean;
  plainIntervalMs?: number;
}

function _writeStderr(text: string): void {
  writeAllSync(Deno.stderr, text);
}

/** One command's progress reporter; see the module comment for its use. */
export class Progress {
  readonly mode: ReportMode;
  readonly #write: (text: string) => void;
  readonly #now: () => number;
  readonly #columns: () => number;
  readonly #color: boolean;
  readonly #plainIntervalMs: number;
  readonly #startedAt: number;
  /** Recent (time, bytes moved) samples for the speed. */
  #samples: { at: number; bytes: number }[] = [];
  #lastDraw = -Infinity;
  #lastPlain: number;
  #barShown = false;
  #last: ProgressState | undefined;

  constructor(mode: ReportMode, options: ProgressOptions = {}) {
    this.mode = mode;
    this.#write = options.write ?? _writeStderr;
    this.#now = options.now ?? (() => performance.now());
    this.#columns = options.columns ?? (() => terminalSize().columns);
    this.#color = options.color ?? (mode === "bar" && colorEnabled(Deno.stderr));
    this.#plainIntervalMs = options.plainIntervalMs ?? PLAIN_PROGRESS_INTERVAL_MS;
    this.#startedAt = this.#now();
    this.#lastPlain = this.#startedAt;
  }

  /** Speed over the last SPEED_WINDOW_MS and the time left at that speed. */
  rate(s: ProgressState): Rate {
    const now = this.#now();
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    let bytesPerSecond = 0;
    if (first && last && last.at - first.at > 0) {
      bytesPerSecond = ((last.bytes - first.bytes) / (last.at - first.at)) * 1000;
    } else if (last && now - this.#startedAt > 0) {
      bytesPerSecond = (last.bytes / (now - this.#startedAt)) * 1000;
    }
    const remaining = Math.max(0, s.bytesTotal - (s.bytesPresent ?? 0) - _shown(s));
    const etaMs = remaining === 0
      ? 0
      : bytesPerSecond > 0
      ? (remaining / bytesPerSecond) * 1000
      : undefined;
    return { bytesPerSecond, etaMs };
  }

  /** Records the state; draws the bar, or prints a line when one is due. */
  update(s: ProgressState): void {
    const now = this.#now();
    this.#last = s;
    this.#samples.push({ at: now, bytes: s.bytesMoved ?? s.bytesDone });
    while (this.#samples.length > 2 && now - this.#samples[0]!.at > SPEED_WINDOW_MS) {
      this.#samples.shift();
    }
    if (this.mode === "quiet") return;
    if (this.mode === "bar") {
      if (now - this.#lastDraw < BAR_REDRAW_INTERVAL_MS) return;
      this.#lastDraw = now;
      this.#barShown = true;
      this.#write(
        `\r${renderProgressBar(s, this.rate(s), this.#columns(), this.#color)}${CLEAR_LINE}`,
      );
      return;
    }
    if (now - this.#lastPlain < this.#plainIntervalMs) return;
    this.#lastPlain = now;
    this.#write(this.#line(s) + "\n");
  }

  /**
   * Something that happened (a failover, a bad copy): a line above the bar,
   * or with --json the given object as one JSON line.
   */
  event(text: string, json?: Record<string, unknown>): void {
    if (this.mode === "quiet") return;
    if (this.mode === "json") {
      this.#write(JSON.stringify(json ?? { type: "event", message: text }) + "\n");
      return;
    }
    this.#clearBar();
    // Events quote names and addresses from the network.
    this.#write(printable(text) + "\n");
    // Redraw the bar below the event at once.
    if (this.mode === "bar" && this.#last) {
      this.#lastDraw = -Infinity;
      this.update(this.#last);
    }
  }

  /** Clears the bar; call once when the work ends, however it ends. */
  finish(): void {
    this.#clearBar();
  }

  #clearBar(): void {
    if (!this.#barShown) return;
    this.#barShown = false;
    this.#write(`\r${CLEAR_LINE}`);
  }

  #line(s: ProgressState): string {
    const rate = this.rate(s);
    if (this.mode !== "json") return formatProgressLine(s, rate);
    return JSON.stringify({
      type: "progress",
      ...s,
      bytesPerSecond: Math.round(rate.bytesPerSecond),
      etaMs: rate.etaMs === undefined ? null : Math.round(rate.etaMs),
      elapsedMs: Math.round(this.#now() - this.#startedAt),
    });
  }
}
