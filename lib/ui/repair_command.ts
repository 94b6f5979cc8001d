/**
 * Running a repair or scrub for a command: the options its flags ask for
 * (with the defaults and the --unused-after floor), then the run itself with
 * Ctrl-C interrupting it cleanly, events printed as they happen, and the
 * summary (or JSON) at the end.
 */
import { UsageError } from "../wire/errors.ts";
import {
  DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
  DEFAULT_UNUSED_AFTER_MS,
  DEFAULT_VERIFY_RATE_BYTES_PER_SECOND,
  MIN_UNUSED_AFTER_MS,
  type RepairOptions,
  type RepairReport,
} from "../ops/repair.ts";
import { reportMode } from "./progress.ts";
import { type RepairRunner } from "../ops/heal.ts";
import { formatDuration } from "../base/units.ts";
import { onStopSignal } from "../base/stop_signal.ts";
import { formatRepairSummary, repairOutcome } from "./repair_format.ts";
import { eventPrinter, RepairProgressView } from "./repair_progress.ts";
import { printable } from "../base/printable.ts";

/** What a repair or scrub command was asked for; undefined where a flag was not given. */
export interface RepairCommandRequest {
  copyRateBytesPerSecond: number | undefined;
  verifyRateBytesPerSecond: number | undefined;
  tls: RepairOptions["tls"];
  unusedAfterMs: number | undefined;
  quiet: boolean;
  json: boolean;
}

/** The options a repair or scrub command runs with: its request, with defaults filled in. */
export type RepairCommandOptions =
  & Pick<
    RepairOptions,
    "copyRateBytesPerSecond" | "verifyRateBytesPerSecond" | "tls" | "unusedAfterMs"
  >
  & { quiet: boolean; json: boolean };

/**
 * Fills in the default rates and --unused-after. --unused-after is 0 (keep
 * them) or at least MIN_UNUSED_AFTER_MS, so that a slip such as
 * "--unused-after 24" (seconds) cannot delete the parts of uploads under way.
 */
export function repairCommandOptions(request: RepairCommandRequest): RepairCommandOptions {
  const unusedAfterMs = request.unusedAfterMs ?? DEFAULT_UNUSED_AFTER_MS;
  if (unusedAfterMs !== 0 && unusedAfterMs < MIN_UNUSED_AFTER_MS) {
    throw new UsageError(
      `--unused-after: ${
        formatDuration(unusedAfterMs)
      } is too short; parts of uploads under way would be deleted. Give 1h or more (e.g. 24h, 7d), or 0 to keep them`,
    );
  }
  return {
    copyRateBytesPerSecond: request.copyRateBytesPerSecond ?? DEFAULT_REPAIR_RATE_BYTES_PER_SECOND,
    verifyRateBytesPerSecond: request.verifyRateBytesPerSecond ??
      DEFAULT_VERIFY_RATE_BYTES_PER_SECOND,
    tls: request.tls,
    unusedAfterMs,
    quiet: request.quiet,
    json: request.json,
  };
}

/**
 * Runs a repair for a command: Ctrl-C interrupts it cleanly, events print as
 * they happen, and the summary (or JSON) follows. Returns the exit code.
 */
export async function runRepairCommand(
  label: "repair" | "scrub",
  repair: RepairRunner,
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
    report = await repair({
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
    console.log(`${label}: ${printable(formatRepairSummary(report, elapsed))}`);
  }
  const outcome = repairOutcome(report);
  if (outcome.error) console.error(`fts ${label}: ${printable(outcome.error)}`);
  return outcome.code;
}
