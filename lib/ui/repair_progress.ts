/**
 * A repair's progress on screen: the progress reporter's state for each step
 * (census, re-hash, copy), one reporter per step so each has its own speed
 * and ETA, and the printer that puts events between the bar's updates.
 */
import { type RepairEvent, type RepairProgress } from "../ops/repair.ts";
import { Progress, type ProgressState, type ReportMode } from "./progress.ts";
import { formatRepairEvent } from "./repair_format.ts";
import { printable } from "../base/printable.ts";

/**
 * The shared progress reporter's view of a repair or scrub step: the copies
 * re-hashed, then the copies made (failed attempts count as failovers).
 * Undefined for a step with nothing to do.
 */
export function repairProgressState(
  label: string,
  p: RepairProgress,
): ProgressState | undefined {
  switch (p.phase) {
    case "census":
      return {
        label,
        activity: "asking every instance which parts it stores",
        bytesTotal: 0,
        bytesDone: 0,
        partsTotal: 0,
        partsDone: 0,
      };
    case "verify":
      if (p.verifyTotal === 0) return undefined;
      return {
        label: `${label}: re-hashing`,
        bytesTotal: p.verifyBytesTotal,
        bytesDone: p.bytesVerified,
        partsTotal: p.verifyTotal,
        partsDone: p.verified,
        ...(p.corrupt > 0 ? { note: `${p.corrupt} corrupt` } : {}),
      };
    case "copy":
      if (p.copyTotal === 0) return undefined;
      return {
        label: `${label}: copying`,
        bytesTotal: p.copyBytesTotal,
        bytesDone: p.bytesCopied,
        bytesMoved: p.bytesCopied + p.bytesCopying,
        partsTotal: p.copyTotal,
        partsDone: p.copied,
        failovers: p.failedCopies,
        ...(p.corrupt > 0 ? { note: `${p.corrupt} corrupt` } : {}),
      };
  }
}

/**
 * Shows a repair's progress: one reporter per step, so each step's speed and
 * ETA are its own. `current` is the reporter events go through.
 */
export class RepairProgressView {
  readonly #label: string;
  readonly #mode: ReportMode;
  #phase: RepairProgress["phase"] | undefined;
  current: Progress;

  constructor(label: string, mode: ReportMode) {
    this.#label = label;
    this.#mode = mode;
    this.current = new Progress(mode);
  }

  update(p: RepairProgress): void {
    if (p.phase !== this.#phase) {
      this.current.finish();
      this.current = new Progress(this.#mode);
      this.#phase = p.phase;
    }
    const state = repairProgressState(this.#label, p);
    if (state) this.current.update(state);
  }

  finish(): void {
    this.current.finish();
  }
}

/**
 * Prints events as they happen: trouble on stderr, the rest on stdout unless
 * quiet; with --json every event is a JSON line on stderr. Lines clear the
 * progress bar first.
 */
export function eventPrinter(
  quiet: boolean,
  progress?: RepairProgressView,
): (event: RepairEvent) => void {
  return (event) => {
    const reporter = progress?.current;
    if (reporter?.mode === "json") {
      reporter.event(formatRepairEvent(event) ?? event.type, event);
      return;
    }
    const formatted = formatRepairEvent(event);
    if (formatted === undefined) return;
    // File names may hold characters a terminal acts on (names stored before the rules).
    const line = printable(formatted);
    if (
      event.type === "lost" || event.type === "short" || event.type === "corrupt" ||
      event.type === "unchecked"
    ) {
      if (reporter && reporter.mode !== "quiet") {
        reporter.event(line);
      } else {
        console.error(line);
      }
    } else if (!quiet) {
      // On stdout, where scripts and tests read them; the bar comes back at the next update.
      reporter?.finish();
      console.log(line);
    }
  };
}
