/**
 * 8. The HTTP gateway: the main file downloaded with curl through one
 * gateway, with `fts fetch`, with curl from nginx (the same file on disk),
 * and with aria2c from three gateways at once through the Metalink document
 * (on 127.0.0.1-3, since aria2c limits connections per host name). Bytes
 * sent are the instances' (what the gateway or fetch pulled), or nginx's.
 * The gateways' peak resident memory goes in the notes.
 */
import { join } from "node:path";
import { BenchCluster } from "./fts_cluster.ts";
import { FtsProcess } from "./fts_process.ts";
import { residentMemory, runTimed } from "./measure.ts";
import { findProgram } from "./peers.ts";
import {
  type BenchContext,
  type Contender,
  curlRun,
  emptyDir,
  expectFile,
  ftsRun,
  infoRatio,
  medianOf,
  rounds,
  type Run,
  type ScenarioResult,
} from "./scenarios.ts";

/** Gateways aria2c downloads from, one per loopback address. */
const GATEWAYS = 3;
/** aria2c's connections per gateway and pieces in parallel: about what fetch uses. */
export const ARIA2C_FLAGS = [
  "--follow-metalink=mem",
  "--max-connection-per-server=2",
  "--split=6",
  "--min-split-size=8M",
  "--file-allocation=none",
  "--allow-overwrite=true",
  "--auto-file-renaming=false",
  "--console-log-level=error",
  "--summary-interval=0",
];

interface _Gateway {
  process: FtsProcess;
  url: string;
}

async function _startGateway(dir: string, host: string): Promise<_Gateway> {
  const process = new FtsProcess([
    "gateway",
    "--data",
    dir,
    "--port",
    "0",
    "--host",
    host,
    "--quiet",
  ]);
  const match = await process.waitFor(/ready: (http:\/\/\S+?)\/ /, 30_000);
  return { process, url: match[1]! };
}

export async function gatewayDownload(ctx: BenchContext): Promise<ScenarioResult> {
  const scenario = "8. gateway download";
  const gateways: _Gateway[] = [];
  try {
    for (let i = 1; i <= GATEWAYS; i++) {
      gateways.push(await _startGateway(ctx.cluster.dir, `127.0.0.${i}`));
    }
    const first = gateways[0]!;
    const fileUrl = `${first.url}/files/${encodeURIComponent(ctx.file.name)}`;
    const place = (name: string) => join(ctx.work, name);
    const instancesRun = (run: () => Promise<Run>) => async () => {
      const before = await ctx.cluster.bytesServed();
      const result = await run();
      const sent = BenchCluster.served(before, await ctx.cluster.bytesServed());
      return { ...result, ...(sent !== undefined ? { bytesSent: sent } : {}) };
    };
    const curl = ctx.programs.curl;
    const contenders: Contender[] = [
      {
        tool: "curl (1 gateway)",
        prepare: () => emptyDir(place("gw-curl")),
        run: instancesRun(async () => {
          const outcome = await runTimed(curl, [
            "-sS",
            "--fail",
            "-o",
            join(place("gw-curl"), ctx.file.name),
            fileUrl,
          ]);
          if (outcome.code !== 0) throw new Error(`curl from the gateway: ${outcome.stderr}`);
          return _run(outcome);
        }),
        check: () => expectFile(join(place("gw-curl"), ctx.file.name), ctx.file),
      },
      {
        tool: "fts fetch",
        prepare: () => emptyDir(place("gw-fts")),
        run: ftsRun(ctx, ctx.file, place("gw-fts")),
        check: () => expectFile(join(place("gw-fts"), ctx.file.name), ctx.file),
      },
      {
        tool: "curl (nginx)",
        prepare: () => emptyDir(place("gw-nginx")),
        run: curlRun(ctx, join(place("gw-nginx"), ctx.file.name), []),
        check: () => expectFile(join(place("gw-nginx"), ctx.file.name), ctx.file),
      },
    ];
    const aria2c = findProgram("aria2c");
    if (aria2c) {
      contenders.push({
        tool: `aria2c (${GATEWAYS} gateways, Metalink)`,
        prepare: () => emptyDir(place("gw-aria2c")),
        run: instancesRun(async () => {
          const outcome = await runTimed(aria2c, [
            ...ARIA2C_FLAGS,
            "-d",
            place("gw-aria2c"),
            `${fileUrl}.meta4`,
          ]);
          if (outcome.code !== 0) throw new Error(`aria2c: ${outcome.stdout}${outcome.stderr}`);
          return _run(outcome);
        }),
        check: () => expectFile(join(place("gw-aria2c"), ctx.file.name), ctx.file),
      });
    } else {
      ctx.log("  aria2c is not installed (apt-get install aria2): its figure is left out");
    }
    const figures = await rounds(ctx, scenario, contenders);
    const peaks = gateways.map((g) => residentMemory(g.process.pid)?.peakBytes ?? 0);
    for (const figure of figures) {
      if (figure.tool.startsWith("curl (1")) {
        figure.note = `gateway peak RSS ${(peaks[0]! / 1e6).toFixed(0)} MB`;
      } else if (figure.tool.startsWith("aria2c")) {
        figure.note = `gateways' peak RSS ${peaks.map((p) => (p / 1e6).toFixed(0)).join(", ")} MB`;
      }
    }
    const gateway = medianOf(figures, "curl (1 gateway)");
    const goals = [
      infoRatio(
        "gateway: curl via gateway / curl+nginx",
        gateway / medianOf(figures, "curl (nginx)"),
      ),
      infoRatio("gateway: curl via gateway / fts fetch", gateway / medianOf(figures, "fts fetch")),
    ];
    if (aria2c) {
      goals.push(infoRatio(
        `gateway: aria2c from ${GATEWAYS} gateways / curl via 1 gateway`,
        medianOf(figures, `aria2c (${GATEWAYS} gateways, Metalink)`) / gateway,
      ));
    }
    for (const name of ["gw-curl", "gw-fts", "gw-nginx", "gw-aria2c"]) {
      await Deno.remove(place(name), { recursive: true }).catch(() => {});
    }
    return { figures, goals };
  } finally {
    for (const gateway of gateways) {
      gateway.process.kill("SIGTERM");
      await gateway.process.status;
    }
  }
}

function _run(outcome: { seconds: number; peakRssBytes: number | undefined }): Run {
  return {
    seconds: outcome.seconds,
    ...(outcome.peakRssBytes !== undefined ? { peakRssBytes: outcome.peakRssBytes } : {}),
  };
}
