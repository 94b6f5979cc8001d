import {
  boolFlag,
  durationFlag,
  type ParsedFlags,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { type ClusterConfig, requireConfig, resolveDataDir } from "../lib/state/config.ts";
import { UsageError } from "../lib/wire/errors.ts";
import {
  DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
  DEFAULT_UNUSED_AFTER_MS,
  DEFAULT_VERIFY_RATE_BYTES_PER_SECOND,
  describePart,
  MIN_UNUSED_AFTER_MS,
  repairCluster,
  type RepairEvent,
  type RepairOptions,
  type RepairProgress,
  type RepairReport,
} from "../lib/ops/repair.ts";
import { Progress, type ProgressState, type ReportMode, reportMode } from "../lib/ui/progress.ts";
import { loadTlsClientOptions } from "../lib/wire/tls.ts";
import { formatBytes, formatDuration } from "../lib/base/units.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";

export const USAGE =
  "fts repair [--dry-run] [--verify] [--limit-rate 64MiB] [--hash-rate 256MiB] [--unused-after 24h] [--tls-ca FILE] [--quiet] [--json] [--data DIR]\n" +
  "  --verify      re-hash every copy, not only those of parts that need work\n" +
  "  --limit-rate  bytes per second copied between instances, over all copies (0: no limit)\n" +
  "  --hash-rate   bytes per second re-hashed on the instances (0: no limit)\n" +
  "  --unused-after  delete parts no file uses (left by uploads that never finished) once stored this long (0: keep them)";

export const EXAMPLE = [
  "fts repair --dry-run   # what it would copy and drop",
  "fts repair             # bring every part back to R copies",
].join("\n");

/** Flags that repair and scrub share. */
export const SHARED_FLAGS = {
  data: { type: "string" },
  "limit-rate": { type: "string" },
  "hash-rate": { type: "string" },
  "unused-after": { type: "string" },
  "tls-ca": { type: "string" },
  quiet: { type: "boolean", short: "q" },
  json: { type: "boolean" },
} as const;

/** What the shared flags ask for: rates (with their defaults), TLS, and how to print. */
export async function sharedOptions(flags: ParsedFlags): Promise<
  Pick<
    RepairOptions,
    "copyRateBytesPerSecond" | "verifyRateBytesPerSecond" | "tls" | "unusedAfterMs"
  > & {
    quiet: boolean;
    json: boolean;
  }
> {
  return {
    copyRateBytesPerSecond: sizeFlag(flags, "limit-rate") ?? DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
    verifyRateBytesPerSecond: sizeFlag(flags, "hash-rate") ?? DEFAULT_VERIFY_RATE_BYTES_PER_SECOND,
    tls: await loadTlsClientOptions(stringFlag(flags, "tls-ca")),
    unusedAfterMs: _unusedAfter(flags),
    quiet: boolFlag(flags, "quiet"),
    json: boolFlag(flags, "json"),
  };
}

/**
 * --unused-after: 0 (keep them), or at least MIN_UNUSED_AFTER_MS, so that a
 * slip such as "--unused-after 24" (seconds) cannot delete the parts of
 * uploads under way.
 */
function _unusedAfter(flags: ParsedFlags): number {
  const ms = durationFlag(flags, "unused-after") ?? DEFAULT_UNUSED_AFTER_MS;
  if (ms !== 0 && ms < MIN_UNUSED_AFTER_MS) {
    throw new UsageError(
      `--unused-after: ${
        formatDuration(ms)
      } is too short; parts of uploads under way would be deleted. Give 1h or more (e.g. 24h, 7d), or 0 to keep them`,
    );
  }
  return ms;
}

function _n(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : plural}`;
}

/** One line for people per repair event; undefined for events not worth a line. */
export function formatRepairEvent(event: RepairEvent): string | undefined {
  switch (event.type) {
    case "census":
      return `census: ${event.live.length}/${
        event.live.length + event.down.length
      } instances answer` +
        (event.down.length > 0 ? `; down: ${event.down.join(", ")}` : "");
    case "corrupt":
      return `corrupt: the copy of ${
        describePart(event.digest, event.refs)
      } on ${event.id} fails its digest; quarantined there`;
    case "copy":
      return `${event.dryRun ? "would copy" : "copied"} ${
        describePart(event.digest, event.refs)
      } (${formatBytes(event.bytes)}): ${event.from} -> ${event.to}`;
    case "copy-failed":
      return `copy of ${
        describePart(event.digest, event.refs)
      } ${event.from} -> ${event.to} failed: ${event.reason}`;
    case "drop":
      return `${event.dryRun ? "would drop" : "dropped"} surplus copy of ${
        describePart(event.digest, event.refs)
      } on ${event.id}`;
    case "short":
      return `under-replicated: ${
        describePart(event.digest, event.refs)
      } has ${event.have} of ${event.want} copies; no other live instance can take one`;
    case "lost":
      return `LOST: ${describePart(event.digest, event.refs)} (digest ${
        event.digest.slice(0, 12)
      }): no good copy on any live instance` +
        (event.listed.length > 0 ? ` (listed on ${event.listed.join(", ")})` : "");
    case "manifest":
      return undefined;
  }
}

/** The closing line of a repair or scrub. */
export function formatRepairSummary(report: RepairReport, elapsedMs: number): string {
  const would = report.dryRun ? "would be " : "";
  const done: string[] = [];
  if (report.verified > 0) {
    done.push(
      `${_n(report.verified, "copy", "copies")} re-hashed (${formatBytes(report.bytesVerified)})`,
    );
  }
  if (report.corrupt.length > 0) {
    done.push(`${_n(report.corrupt.length, "corrupt copy", "corrupt copies")} quarantined`);
  }
  if (report.copied > 0) {
    done.push(
      `${_n(report.copied, "copy", "copies")} ${would}made (${formatBytes(report.bytesCopied)})`,
    );
  }
  if (report.failedCopies > 0) done.push(`${_n(report.failedCopies, "copy attempt")} failed`);
  if (report.dropped > 0) {
    done.push(`${_n(report.dropped, "surplus copy", "surplus copies")} ${would}dropped`);
  }
  if (report.manifestParts > 0) {
    done.push(
      `manifest ${would}updated for ${_n(report.manifestParts, "part entry", "part entries")}`,
    );
  }
  if (report.short.length > 0) {
    done.push(`${_n(report.short.length, "part")} still under-replicated`);
  }
  if (report.lost.length > 0) done.push(`${_n(report.lost.length, "part")} LOST`);
  if (report.unused.parts > 0) {
    done.push(
      `${_n(report.unused.parts, "part")} no file uses ${would}deleted (${
        _n(report.unused.copies, "copy", "copies")
      }, ${formatBytes(report.unused.bytes)})`,
    );
  }
  const what = done.length > 0
    ? done.join(", ")
    : `nothing to do, every one of ${report.parts} parts has its copies`;
  return `${what} (${report.live.length}/${report.live.length + report.down.length} instances up, ${
    formatDuration(elapsedMs)
  })`;
}

/** The exit code and closing complaint of a repair or scrub that could not do everything. */
export function repairOutcome(report: RepairReport): { code: number; error?: string } {
  if (report.lost.length > 0) {
    const files = [...new Set(report.lost.flatMap((l) => l.refs.map((r) => r.file)))];
    return {
      code: 1,
      error: `${_n(report.lost.length, "part")} without a good copy (files: ${
        files.map((f) => JSON.stringify(f)).join(", ")
      }); bring their instances back (fts start PORT) or upload the files again`,
    };
  }
  if (report.short.length > 0) {
    return {
      code: 1,
      error: `${_n(report.short.length, "part")} with fewer copies than R: too few live instances`,
    };
  }
  return { code: 0 };
}

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
    const line = formatRepairEvent(event);
    if (line === undefined) return;
    if (event.type === "lost" || event.type === "short" || event.type === "corrupt") {
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

/**
 * Runs a repair for a command: Ctrl-C interrupts it cleanly, events print as
 * they happen, and the summary (or JSON) follows. Returns the exit code.
 */
export async function runRepairCommand(
  label: "repair" | "scrub",
  dir: string,
  config: ClusterConfig,
  options: RepairOptions & { quiet: boolean; json: boolean },
): Promise<number> {
  const { quiet, json, ...repairOptions } = options;
  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  const stopListening = onStopSignal(onSignal);
  const started = performance.now();
  const progress = new RepairProgressView(label, reportMode({ quiet, json }));
  let report: RepairReport;
  try {
    report = await repairCluster(dir, config, {
      ...repairOptions,
      signal: controller.signal,
      onEvent: eventPrinter(quiet || json, progress),
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.finish();
    stopListening();
  }
  const elapsed = performance.now() - started;
  if (json) {
    console.log(JSON.stringify({ ...report, elapsedMs: Math.round(elapsed) }, null, 2));
  } else {
    console.log(`${label}: ${formatRepairSummary(report, elapsed)}`);
  }
  const outcome = repairOutcome(report);
  if (outcome.error) console.error(`fts ${label}: ${outcome.error}`);
  return outcome.code;
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...SHARED_FLAGS,
    "dry-run": { type: "boolean" },
    verify: { type: "boolean" },
  });
  const options = await sharedOptions(flags);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await requireConfig(dir);
  return await runRepairCommand("repair", dir, config, {
    dryRun: boolFlag(flags, "dry-run"),
    verifyAll: boolFlag(flags, "verify"),
    ...options,
  });
}
