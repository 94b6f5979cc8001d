import { basename } from "node:path";
import {
  boolFlag,
  durationFlag,
  expectPositionals,
  intFlag,
  isTerminal,
  parseFlags,
  sizeFlag,
  stringFlag,
  writeErr,
} from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { validateFileName } from "../lib/manifest.ts";
import { SIGNING_FLAGS, signingContext } from "../lib/signed_client.ts";
import { formatBytes, formatDuration } from "../lib/units.ts";
import { MAX_UPLOAD_PARALLEL, uploadFile, type UploadProgress } from "../lib/upload.ts";

export const USAGE =
  "fts upload FILE [--as NAME] [--replace] [--identity FILE | --operator] [--server HOST:PORT]... [--parallel 4] [--limit-rate RATE] [--timeout 10s] [--quiet] [--json] [--data DIR]";

export const EXAMPLE = [
  "fts upload movie.mkv                         # yours: only your identity can rm or mv it",
  "fts upload notes.txt --as notes-v2.txt --server 10.0.0.5:9001",
].join("\n");

/** How often a progress line is printed when stderr is not a terminal. */
const PLAIN_PROGRESS_INTERVAL_MS = 2_000;

function _progressLine(p: UploadProgress): string {
  if (p.phase === "checking") return `${p.name}: checking that every copy's instance is up`;
  if (p.phase === "publishing") return `${p.name}: publishing`;
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.bytesSent / seconds : 0;
  const percent = p.size > 0 ? ((p.bytesDone / p.size) * 100).toFixed(1) : "100.0";
  return `${p.name}: ${formatBytes(p.bytesDone)}/${formatBytes(p.size)} stored (${percent}%), ` +
    `${formatBytes(rate)}/s sent, parts ${p.partsDone} of ${p.parts} (${p.partsPresent} were ` +
    `present), copies ${p.copiesSent} sent/${p.copiesPresent} present` +
    (p.failovers > 0 ? `, ${p.failovers} failovers` : "");
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
  const name = stringFlag(flags, "as") ?? basename(path);
  try {
    validateFileName(name);
  } catch (cause) {
    throw new UsageError(`Bad file name for ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    if (!(await Deno.stat(path)).isFile) throw new UsageError(`${path} is not a regular file`);
  } catch (cause) {
    if (cause instanceof UsageError) throw cause;
    throw new UsageError(`Cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  const parallel = intFlag(flags, "parallel", 1, MAX_UPLOAD_PARALLEL);
  const rate = sizeFlag(flags, "limit-rate");
  if (rate !== undefined && rate < 1024) throw new UsageError("--limit-rate must be at least 1KiB");
  const stallTimeoutMs = durationFlag(flags, "timeout");
  const quiet = boolFlag(flags, "quiet");
  const json = boolFlag(flags, "json");
  const tty = isTerminal(Deno.stderr);
  const { servers, identity } = await signingContext(flags);

  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let lastPlain = 0;
  const say = (line: string) => {
    if (quiet || json) return;
    if (tty) writeErr("\r\x1b[K");
    console.error(line);
  };
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
          if (event.type === "failover") {
            say(
              `failover: instance ${event.instance}${
                event.part >= 0 ? ` (part ${event.part})` : ""
              }: ${event.reason}; using the next instance in placement order`,
            );
          } else if (event.type === "republish") {
            say(`publish refused, sending missing copies again: ${event.reason}`);
          }
        },
      },
      (progress) => {
        if (quiet || json || progress.phase === "locating") return;
        if (tty) {
          writeErr(`\r\x1b[K${_progressLine(progress)}`);
        } else if (progress.elapsedMs - lastPlain >= PLAIN_PROGRESS_INTERVAL_MS) {
          lastPlain = progress.elapsedMs;
          console.error(_progressLine(progress));
        }
      },
    );
    if (tty && !quiet && !json) writeErr("\r\x1b[K");
    if (json) {
      console.log(JSON.stringify({ ok: true, owner: identity.owner, ...result }));
    } else if (!quiet) {
      console.log(
        `uploaded ${path} as ${name}: ${formatBytes(result.size)} in ${result.parts} parts, ` +
          `${result.replicas} verified copies each (${result.copiesSent} sent, ${result.copiesPresent} ` +
          `were already stored), ${result.failovers} failovers, ${
            formatDuration(result.elapsedMs)
          }` + (result.unchanged ? "; the cluster already had this exact file from you" : ""),
      );
    }
    return 0;
  } finally {
    if (tty && !quiet && !json) writeErr("\r\x1b[K");
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
