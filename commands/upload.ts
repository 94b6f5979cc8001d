import {
  boolFlag,
  expectPositionals,
  intFlag,
  parseFlags,
  SIGNING_FLAGS,
  signingFlags,
  sizeFlag,
  stallTimeoutFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { normalizeFileName, validateNewFileName } from "../lib/state/manifest.ts";
import { basename } from "../lib/base/paths.ts";
import { Progress, type ProgressState, reportMode } from "../lib/ui/progress.ts";
import { signingContext } from "../lib/client/signed_client.ts";
import { formatBytes, formatDuration, plural } from "../lib/base/units.ts";
import { MAX_UPLOAD_PARALLEL, uploadFile } from "../lib/client/upload.ts";
import { type UploadProgress } from "../lib/client/upload_progress.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";

export const USAGE =
  "fts upload FILE [--as NAME] [--replace] [--identity FILE | --operator] [--server HOST:PORT]... [--tls-ca FILE] [--parallel 4] [--limit-rate RATE] [--timeout 10s] [--quiet] [--json] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts upload movie.mkv                         # yours: only your identity can rm or mv it",
  "fts upload notes.txt --as notes-v2.txt --server 10.0.0.5:9001",
].join("\n");

/**
 * The shared progress reporter's view of an upload: parts whose every copy
 * the instances already had are counted apart, as present, and instances
 * replaced after a failure as failovers.
 */
export function uploadProgressState(p: UploadProgress): ProgressState {
  const bytesDone = p.bytesDone - p.bytesPresent;
  const state: ProgressState = {
    label: `upload ${p.name}`,
    bytesTotal: p.size,
    bytesDone,
    bytesPresent: p.bytesPresent,
    bytesMoved: bytesDone + p.bytesInFlight,
    partsTotal: p.parts,
    partsDone: p.partsDone - p.partsPresent,
    partsPresent: p.partsPresent,
    failovers: p.failovers,
    note: `copies ${p.copiesSent} sent/${p.copiesPresent} present`,
  };
  if (p.phase === "checking") state.activity = "checking that every copy's instance is up";
  if (p.phase === "publishing") state.activity = "publishing";
  return state;
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...SIGNING_FLAGS,
    as: { type: "string" },
    replace: { type: "boolean" },
    parallel: { type: "string" },
    "limit-rate": { type: "string" },
    timeout: { type: "string" },
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
  });
  const [path = ""] = expectPositionals(flags, 1, 1, USAGE);
  const name = normalizeFileName(stringFlag(flags, "as") ?? basename(path));
  try {
    validateNewFileName(name);
  } catch (cause) {
    throw new UsageError(`Bad file name for ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    if (!(await Deno.stat(path)).isFile) throw new UsageError(`${path} is not a regular file`);
    // Readable too, before an identity is made for it.
    (await Deno.open(path, { read: true })).close();
  } catch (cause) {
    if (cause instanceof UsageError) throw cause;
    throw new UsageError(`Cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  const parallel = intFlag(flags, "parallel", 1, MAX_UPLOAD_PARALLEL);
  const rate = sizeFlag(flags, "limit-rate");
  if (rate !== undefined && rate < 1024) throw new UsageError("--limit-rate must be at least 1KiB");
  const stallTimeoutMs = stallTimeoutFlag(flags);
  const quiet = boolFlag(flags, "quiet");
  const json = boolFlag(flags, "json");
  const { servers, identity } = await signingContext(signingFlags(flags));

  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  const stopListening = onStopSignal(onSignal);
  const progress = new Progress(reportMode({ quiet, json }));
  let last: UploadProgress | undefined;
  try {
    const result = await uploadFile(
      {
        path,
        name,
        servers,
        identity,
        replace: boolFlag(flags, "replace"),
        ...(parallel !== undefined ? { parallel } : {}),
        ...(rate !== undefined ? { limitRateBytesPerSecond: rate } : {}),
        ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
        signal: controller.signal,
        onEvent: (event) => {
          // With --json these are one JSON object per line on stderr.
          if (event.type === "failover") {
            progress.event(
              `failover: instance ${event.instance}${
                event.part >= 0 ? ` (part ${event.part})` : ""
              }: ${event.reason}; using the next instance in placement order`,
              event,
            );
          } else if (event.type === "republish") {
            progress.event(`publish refused, sending missing copies again: ${event.reason}`, event);
          }
        },
      },
      (p) => {
        last = p;
        if (p.phase !== "locating") progress.update(uploadProgressState(p));
      },
    );
    progress.finish();
    if (json) {
      console.log(JSON.stringify({ ok: true, owner: identity.owner, ...result }));
    } else if (!quiet) {
      console.log(
        `uploaded ${path} as ${name}: ${formatBytes(result.size)} in ${
          plural(result.parts, "part")
        }, ` +
          `${result.replicas} verified copies each (${result.copiesSent} sent, ${result.copiesPresent} ` +
          `were already stored), ${plural(result.failovers, "failover")}, ${
            formatDuration(result.elapsedMs)
          }` + (result.unchanged ? "; the cluster already had this exact file from you" : ""),
      );
    }
    return 0;
  } catch (error) {
    if (!controller.signal.aborted || !last || last.phase === "locating") throw error;
    throw new DOMException(
      `interrupted with ${last.partsDone} of ${plural(last.parts, "part")} stored, ` +
        `not published: the same command sends only the rest`,
      "AbortError",
    );
  } finally {
    progress.finish();
    stopListening();
  }
}
