import { basename, join, resolve } from "../lib/base/paths.ts";
import {
  boolFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  intFlag,
  listFlag,
  parseFlags,
  sizeFlag,
  stallTimeoutFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { ProtocolError, UsageError } from "../lib/wire/errors.ts";
import { FetchError } from "../lib/client/fetch_error.ts";
import { helperPath, PARTIAL_SUFFIX, STATE_SUFFIX } from "../lib/client/helper_paths.ts";
import { lstatOrUndefined } from "../lib/base/fs_util.ts";
import { fetchFile, type FetchProgress } from "../lib/client/fetch.ts";
import { MAX_PARALLEL } from "../lib/client/fetch_parts.ts";
import { normalizeFileName, validateFileName } from "../lib/state/manifest.ts";
import { instanceTls, resolveServers, startCommand } from "../lib/client/servers.ts";
import { Progress, type ProgressState, reportMode } from "../lib/ui/progress.ts";
import { formatBytes, formatDuration, plural } from "../lib/base/units.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";
import { printable } from "../lib/base/printable.ts";
import { MAX_BATCH_FILES } from "../lib/client/fetch_batch.ts";
import {
  type BatchSelection,
  fetchCountersState,
  runBatch,
} from "../lib/ui/fetch_batch_command.ts";
import type { ParsedFlags } from "../lib/cli/flags.ts";

export const USAGE =
  "fts fetch NAME [DEST_DIR] [--server HOST:PORT]... [--parallel N] [--limit-rate RATE] [--verify] [--fsync] [--timeout 3s] [--tls-ca FILE] [--quiet] [--json] [--data DIR | --etcd URLS [--cluster NAME]]\n" +
  "       fts fetch (--all | --match GLOB... | --names-from FILE|-) [DEST_DIR] [--files 16] [same flags]";

export const EXAMPLE = [
  "fts fetch movie.mkv ~/Downloads              # resumes, fails over, verifies every part",
  "fts fetch movie.mkv --server 10.0.0.5:9001   # from a cluster on another machine",
  "fts fetch movie.mkv --json | jq .failovers   # for scripts",
  "fts fetch --all ~/mirror                     # every file, 16 at a time, in one process",
  "fts fetch --match '*.jpg' --match 'log-2026-??' photos/",
  "fts ls --json | jq -r '.[].name' | grep raw | fts fetch --names-from - raw/",
].join("\n");

/** The shared progress reporter's view of a fetch. */
export function fetchProgressState(p: FetchProgress): ProgressState {
  const state = fetchCountersState(`fetch ${p.name}`, p);
  if (p.phase === "checking") {
    state.activity = `checking what the destination holds, ${formatBytes(p.bytesChecked)} hashed`;
  }
  if (p.digestMismatches > 0) state.note = `${p.digestMismatches} bad copies refetched`;
  return state;
}

/** --all, --match or --names-from: the files of a batch; undefined for a single fetch. */
function _batchSelection(flags: ParsedFlags): BatchSelection | undefined {
  const all = boolFlag(flags, "all");
  const patterns = listFlag(flags, "match");
  const namesFrom = stringFlag(flags, "names-from");
  const given = [all, patterns.length > 0, namesFrom !== undefined].filter(Boolean).length;
  if (given > 1) throw new UsageError("Use one of --all, --match and --names-from");
  if (given === 0) {
    if (flags.values.files !== undefined) {
      throw new UsageError("--files is for a batch: --all, --match or --names-from");
    }
    return undefined;
  }
  if (all) return { all: true };
  if (namesFrom !== undefined) return { namesFrom };
  return { patterns: patterns.map((p) => normalizeFileName(p)) };
}

function _checkName(name: string): void {
  try {
    validateFileName(name);
  } catch (cause) {
    throw new UsageError((cause as Error).message, { cause });
  }
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    server: { type: "string", multiple: true },
    parallel: { type: "string" },
    "limit-rate": { type: "string" },
    verify: { type: "boolean" },
    fsync: { type: "boolean" },
    timeout: { type: "string" },
    "tls-ca": { type: "string" },
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
    all: { type: "boolean" },
    match: { type: "string", multiple: true },
    "names-from": { type: "string" },
    files: { type: "string" },
    ...ETCD_FLAGS,
  });
  const selection = _batchSelection(flags);
  const [typed = "", destArg] = selection
    ? [undefined, ...expectPositionals(flags, 0, 1, USAGE)]
    : expectPositionals(flags, 1, 2, USAGE);
  const name = normalizeFileName(typed);
  if (!selection) _checkName(name);
  if (destArg?.trim() === "") {
    throw new UsageError("DEST_DIR is empty: name a directory (. for here)");
  }
  // "-" is standard output to most tools (and to --names-from): not a directory to make.
  if (destArg === "-") {
    throw new UsageError(
      "fetch writes files into a directory, not to standard output (-): name a directory (./- for one named -)",
    );
  }
  const destDir = resolve(destArg ?? ".");
  const parallel = intFlag(flags, "parallel", 1, MAX_PARALLEL);
  const rate = sizeFlag(flags, "limit-rate");
  // Instances drop a reader that takes less than one 1 MiB chunk per idle timeout (60 s).
  if (rate !== undefined && rate < 32 * 1024) {
    throw new UsageError("--limit-rate must be at least 32KiB");
  }
  const stallTimeoutMs = stallTimeoutFlag(flags);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const named = listFlag(flags, "server");
  const etcd = etcdTarget(flags);
  const servers = await resolveServers(dir, named, etcd);
  const tls = await instanceTls(dir, named, etcd, stringFlag(flags, "tls-ca"));
  const quiet = boolFlag(flags, "quiet");
  const json = boolFlag(flags, "json");
  const progress = new Progress(reportMode({ quiet, json }));
  const common = {
    destDir,
    servers,
    startCommand: startCommand(dir, named, etcd),
    ...(parallel !== undefined ? { parallel } : {}),
    ...(rate !== undefined ? { limitRateBytesPerSecond: rate } : {}),
    ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
    tls,
    verify: boolFlag(flags, "verify"),
    fsync: boolFlag(flags, "fsync"),
  };
  if (selection) {
    const files = intFlag(flags, "files", 1, MAX_BATCH_FILES);
    return await runBatch(selection, { ...common, files }, progress, json);
  }

  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  const stopListening = onStopSignal(onSignal);
  let last: FetchProgress | undefined;
  try {
    const result = await fetchFile(
      {
        ...common,
        name,
        signal: controller.signal,
        onEvent: (event) => {
          // With --json these are one JSON object per line on stderr.
          if (event.type === "failover") {
            progress.event(
              `failover: part ${event.part} from instance ${event.from} at byte ${event.at}: ${event.reason}`,
              event,
            );
          } else if (event.type === "waiting") {
            progress.event(
              `waiting: another fetch is writing ${event.path}; this one goes on when it ends`,
              event,
            );
          } else if (event.type === "mismatch") {
            progress.event(
              `digest mismatch: part ${event.part} from instance ${
                event.replicas.join(", ")
              }; reported, refetching`,
              event,
            );
          }
        },
      },
      (p) => {
        last = p;
        if (p.phase !== "locating") progress.update(fetchProgressState(p));
      },
    );
    progress.finish();
    if (json) {
      console.log(JSON.stringify({ ok: true, ...result }));
    } else if (!quiet) {
      console.log(
        `fetched ${printable(name)} -> ${printable(result.path)}: ${formatBytes(result.size)}, ${
          plural(result.parts, "part")
        } ` +
          `(${result.partsPresent} present, ${result.partsFetched} fetched, ${
            formatBytes(result.bytesReceived)
          } received), ${plural(result.failovers, "failover")}, every part verified, ${
            formatDuration(result.elapsedMs)
          }`,
      );
    }
    return 0;
  } catch (error) {
    if (controller.signal.aborted && last && last.phase !== "locating") {
      const kept = last.partsPresent + last.partsFetched;
      // With no part whole, no partial file is kept: nothing to resume from.
      throw new DOMException(
        kept === 0
          ? `interrupted with none of ${plural(last.parts, "part")} whole: nothing kept, ` +
            `the same command starts over`
          : `interrupted with ${kept} of ${plural(last.parts, "part")} verified and kept: ` +
            `the same command resumes`,
        "AbortError",
      );
    }
    throw _withLeftover(error, join(common.destDir, name));
  } finally {
    progress.finish();
    stopListening();
  }
}

/**
 * A name the cluster does not hold, with a partial download of it at the
 * destination (from a fetch before the file was removed): the error says
 * so. It is not removed: the name may be mistyped, or the wrong cluster
 * asked (--data, --server).
 */
function _withLeftover(error: unknown, finalPath: string): unknown {
  const notFound = error instanceof FetchError && error.cause instanceof ProtocolError &&
    error.cause.code === "NOT_FOUND";
  const partial = helperPath(finalPath, PARTIAL_SUFFIX);
  const info = notFound ? lstatOrUndefined(partial) : undefined;
  if (!info?.isFile) return error;
  return new FetchError(
    `${(error as Error).message}; ${printable(partial)} (${formatBytes(info.size)}) is left ` +
      `from an earlier fetch of it: delete it and ${
        printable(basename(helperPath(finalPath, STATE_SUFFIX)))
      } if the file is gone for good`,
    [],
    { cause: error },
  );
}
