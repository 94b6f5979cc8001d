/**
 * `fts fetch --all | --match GLOB | --names-from FILE`: which names the
 * command picks (the cluster's list filtered, or a list a person or script
 * gave), then the batch fetch with one progress line for all of it, a line
 * on stderr for each file that failed, and a summary (or per-file JSON) at
 * the end. The exit code says whether every file arrived.
 */
import { nameMatcher } from "../base/name_glob.ts";
import { printable } from "../base/printable.ts";
import { onStopSignal } from "../base/stop_signal.ts";
import { formatBytes, formatDuration, plural } from "../base/units.ts";
import {
  type BatchOptions,
  type BatchProgress,
  fetchBatch,
  type FileOutcome,
} from "../client/fetch_batch.ts";
import { checkDestDir } from "../client/destination_check.ts";
import { listFromServers } from "../client/list_files.ts";
import type { FetchProgress } from "../client/fetch.ts";
import { normalizeFileName, validateFileName } from "../state/manifest.ts";
import { UsageError } from "../wire/errors.ts";
import { errorLine } from "./hints.ts";
import type { Progress, ProgressState } from "./progress.ts";

/** Which files a batch fetch is for: given by name, or picked from the cluster's list. */
export type BatchSelection =
  | { all: true }
  | { patterns: string[] }
  | { namesFrom: string };

/** The batch's options once the names are known. */
export type BatchRunOptions = Omit<BatchOptions, "names" | "signal" | "onEvent" | "onFile">;

/** What a fetch's counters (one file's, or a batch's sums) show on the progress line. */
export function fetchCountersState(
  label: string,
  p: Pick<
    FetchProgress,
    | "size"
    | "bytesFetched"
    | "bytesPresent"
    | "bytesReceived"
    | "parts"
    | "partsFetched"
    | "partsPresent"
    | "failovers"
  >,
): ProgressState {
  return {
    label,
    bytesTotal: p.size,
    bytesDone: p.bytesFetched,
    bytesPresent: p.bytesPresent,
    bytesMoved: p.bytesReceived,
    partsTotal: p.parts,
    partsDone: p.partsFetched,
    partsPresent: p.partsPresent,
    failovers: p.failovers,
  };
}

/**
 * The shared progress reporter's view of a batch; `listedBytes` is the size
 * of every file as the listing said, known before their entries are.
 */
export function batchProgressState(p: BatchProgress, listedBytes = 0): ProgressState {
  const state = fetchCountersState(`fetch ${p.filesFetched + p.filesFailed}/${p.files} files`, p);
  state.bytesTotal = Math.max(p.size, listedBytes);
  if (p.filesFailed > 0) state.note = `${p.filesFailed} failed`;
  return state;
}

/** Fetches the selected files; 0 when every one arrived, else 1. */
export async function runBatch(
  selection: BatchSelection,
  options: BatchRunOptions,
  progress: Progress,
  /** --json: the result as one JSON document (with --quiet too, which only drops progress). */
  json = progress.mode === "json",
): Promise<number> {
  const { names, listedBytes } = await _names(selection, options);
  if (names.length === 0) {
    if (json) console.log(JSON.stringify({ ok: true, files: [] }));
    else if (progress.mode !== "quiet") {
      console.log("namesFrom" in selection ? "no names to fetch" : "the cluster holds no files");
    }
    return 0;
  }
  // Once, not once for every file; only once there is something to fetch, so that a selection
  // that matches nothing (a usage error) leaves no directory behind.
  checkDestDir(options.destDir);
  const controller = new AbortController();
  const stopListening = onStopSignal(() =>
    controller.abort(new DOMException("Interrupted", "AbortError"))
  );
  let fetched = 0;
  let failed = 0;
  try {
    const result = await fetchBatch(
      {
        ...options,
        names,
        signal: controller.signal,
        onEvent: (name, event) => {
          if (event.type === "mismatch") {
            progress.event(
              `digest mismatch: ${name} part ${event.part} from instance ${
                event.replicas.join(", ")
              }; reported, refetching`,
              { ...event, name },
            );
          }
        },
        onFile: (outcome) => {
          if (outcome.ok) return void fetched++;
          failed++;
          const line = `fts fetch: ${printable(outcome.name)}: ${
            printable(errorLine(outcome.error))
          }`;
          // Always on stderr, one line each, whatever the report mode.
          if (progress.mode === "quiet" || progress.mode === "json") console.error(line);
          else progress.event(line);
        },
      },
      (p) => progress.update(batchProgressState(p, listedBytes)),
    );
    progress.finish();
    const filesFailed = result.filesFailed;
    if (json) {
      console.log(JSON.stringify({
        ok: filesFailed === 0,
        filesFetched: result.filesFetched,
        filesFailed,
        size: result.size,
        bytesFetched: result.bytesFetched,
        bytesPresent: result.bytesPresent,
        bytesReceived: result.bytesReceived,
        failovers: result.failovers,
        digestMismatches: result.digestMismatches,
        elapsedMs: result.elapsedMs,
        files: result.outcomes.map(_outcomeJson),
      }));
    } else if (progress.mode !== "quiet") {
      console.log(
        `fetched ${result.filesFetched} of ${names.length} files -> ${
          printable(options.destDir)
        }: ${formatBytes(result.size)} in ${
          plural(result.parts, "part")
        } (${result.partsPresent} present, ${result.partsFetched} fetched, ${
          formatBytes(result.bytesReceived)
        } received), ${plural(result.failovers, "failover")}${
          filesFailed > 0 ? `; ${filesFailed} failed` : ", every part verified"
        }, ${formatDuration(result.elapsedMs)}`,
      );
    }
    return filesFailed === 0 ? 0 : 1;
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    throw new DOMException(
      `interrupted with ${fetched} of ${plural(names.length, "file")} fetched` +
        (failed > 0 ? ` and ${failed} failed` : "") +
        `: the same command fetches the rest, resuming where it stopped`,
      "AbortError",
    );
  } finally {
    progress.finish();
    stopListening();
  }
}

function _outcomeJson(outcome: FileOutcome): Record<string, unknown> {
  if (!outcome.ok) return { name: outcome.name, ok: false, error: errorLine(outcome.error) };
  const { name: _, ...rest } = outcome.result;
  return { name: outcome.name, ok: true, ...rest };
}

/**
 * The names to fetch, in name order (or the order a list gave them), each
 * once, and their total size when the cluster's listing told it.
 */
async function _names(
  selection: BatchSelection,
  options: BatchRunOptions,
): Promise<{ names: string[]; listedBytes: number }> {
  if ("namesFrom" in selection) {
    return { names: await _namesFrom(selection.namesFrom), listedBytes: 0 };
  }
  const matches = "all" in selection ? () => true : nameMatcher(selection.patterns);
  const files = await listFromServers(options.servers, options.tls);
  const picked = files.filter((f) => matches(f.name));
  const names = picked.map((f) => f.name).sort();
  // Not bad usage: the same pattern matches once such a file is there (exit 1, as a missing name).
  if (names.length === 0 && "patterns" in selection && files.length > 0) {
    throw new Error(
      `No file of the ${files.length} in the cluster matches ${
        selection.patterns.map((p) => JSON.stringify(p)).join(" or ")
      } (fts ls lists them)`,
    );
  }
  return { names, listedBytes: picked.reduce((sum, f) => sum + f.size, 0) };
}

/** One name a line, from a file or stdin ("-"); blank lines are skipped. */
async function _namesFrom(source: string): Promise<string[]> {
  let text: string;
  try {
    text = source === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(source);
  } catch (cause) {
    throw new UsageError(`Cannot read the names in ${source}: ${(cause as Error).message}`, {
      cause,
    });
  }
  // A byte-order mark (Windows editors write one) is not part of the first name; stdin's
  // text() drops it already.
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  const names = new Set<string>();
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "") continue;
    const name = normalizeFileName(line);
    try {
      validateFileName(name);
    } catch (cause) {
      throw new UsageError(
        `Line ${index + 1} of ${source === "-" ? "stdin" : source}: ${(cause as Error).message}`,
        { cause },
      );
    }
    names.add(name);
  }
  return [...names];
}
