import { resolve } from "node:path";
import {
  boolFlag,
  durationFlag,
  expectPositionals,
  intFlag,
  isTerminal,
  listFlag,
  parseFlags,
  sizeFlag,
  stringFlag,
  writeErr,
} from "../lib/cli.ts";
import { resolveDataDir } from "../lib/config.ts";
import { UsageError } from "../lib/errors.ts";
import { fetchFile, type FetchProgress, MAX_PARALLEL } from "../lib/fetch.ts";
import { validateFileName } from "../lib/manifest.ts";
import { resolveServers } from "../lib/servers.ts";
import { formatBytes, formatDuration } from "../lib/units.ts";

export const USAGE =
  "fts fetch NAME [DEST_DIR] [--server HOST:PORT]... [--parallel 4] [--limit-rate RATE] [--verify] [--timeout 3s] [--quiet] [--json] [--data DIR]";

/** How often a progress line is printed when stderr is not a terminal. */
const PLAIN_PROGRESS_INTERVAL_MS = 2_000;

function _progressLine(p: FetchProgress): string {
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.bytesReceived / seconds : 0;
  const done = p.bytesPresent + p.bytesFetched;
  const percent = p.size > 0 ? ((done / p.size) * 100).toFixed(1) : "100.0";
  if (p.phase === "checking") {
    return `${p.name}: checking destination, ${formatBytes(p.bytesChecked)} hashed`;
  }
  const remaining = p.size - done;
  const eta = rate > 0 ? formatDuration((remaining / rate) * 1000) : "?";
  return `${p.name}: ${formatBytes(done)}/${formatBytes(p.size)} verified (${percent}%)` +
    (p.bytesPresent > 0 ? `, ${formatBytes(p.bytesPresent)} were present` : "") +
    `, ${
      formatBytes(rate)
    }/s, ETA ${eta}, parts ${p.partsPresent} present/${p.partsFetched} fetched of ${p.parts}` +
    (p.failovers > 0 ? `, ${p.failovers} failovers` : "") +
    (p.digestMismatches > 0 ? `, ${p.digestMismatches} bad copies` : "");
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    server: { type: "string", multiple: true },
    parallel: { type: "string" },
    "limit-rate": { type: "string" },
    verify: { type: "boolean" },
    timeout: { type: "string" },
    quiet: { type: "boolean", short: "q" },
    json: { type: "boolean" },
  });
  const [name = "", destArg] = expectPositionals(flags, 1, 2, USAGE);
  try {
    validateFileName(name);
  } catch (cause) {
    throw new UsageError((cause as Error).message, { cause });
  }
  const destDir = resolve(destArg ?? ".");
  const parallel = intFlag(flags, "parallel", 1, MAX_PARALLEL);
  const rate = sizeFlag(flags, "limit-rate");
  if (rate !== undefined && rate < 1024) throw new UsageError("--limit-rate must be at least 1KiB");
  const stallTimeoutMs = durationFlag(flags, "timeout");
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const servers = await resolveServers(dir, listFlag(flags, "server"));
  const quiet = boolFlag(flags, "quiet");
  const json = boolFlag(flags, "json");
  const tty = isTerminal(Deno.stderr);

  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("Interrupted", "AbortError"));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let lastPlain = 0;
  try {
    const result = await fetchFile(
      {
        name,
        destDir,
        servers,
        ...(parallel !== undefined ? { parallel } : {}),
        ...(rate !== undefined ? { limitRateBytesPerSecond: rate } : {}),
        ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
        verify: boolFlag(flags, "verify"),
        signal: controller.signal,
        onEvent: (event) => {
          if (json && !quiet && (event.type === "failover" || event.type === "mismatch")) {
            // Machine-readable events, one JSON object per line, on stderr.
            console.error(JSON.stringify(event));
            return;
          }
          if (quiet || json) return;
          if (event.type === "failover") {
            if (tty) writeErr("\r\x1b[K");
            console.error(
              `failover: part ${event.part} from instance ${event.from} at byte ${event.at}: ${event.reason}`,
            );
          } else if (event.type === "mismatch") {
            if (tty) writeErr("\r\x1b[K");
            console.error(
              `digest mismatch: part ${event.part} from instance ${
                event.replicas.join(", ")
              }; reported, refetching`,
            );
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
      console.log(JSON.stringify({ ok: true, ...result }));
    } else if (!quiet) {
      console.log(
        `fetched ${name} -> ${result.path}: ${formatBytes(result.size)}, ${result.parts} parts ` +
          `(${result.partsPresent} present, ${result.partsFetched} fetched, ${
            formatBytes(result.bytesReceived)
          } received), ${result.failovers} failovers, every part verified, ${
            formatDuration(result.elapsedMs)
          }`,
      );
    }
    return 0;
  } finally {
    if (tty && !quiet && !json) writeErr("\r\x1b[K");
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
