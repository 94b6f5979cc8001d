/**
 * `fts status --watch`: the live view on a terminal; elsewhere a line per
 * event (with a summary line), or with --json one JSON snapshot per poll, so
 * a log or a script can follow the cluster too. Runs until SIGINT/SIGTERM
 * (or 'q' on the terminal).
 */
import { type ClusterConfig } from "../state/config.ts";
import { watchCluster, type WatchSnapshot } from "./cluster_watch.ts";
import { LiveScreen } from "./live_screen.ts";
import { LiveSession } from "./live_session.ts";
import { clock } from "./live_view.ts";
import { type TlsClientOptions } from "../wire/tls.ts";
import { formatBytes } from "../base/units.ts";
import { onStopSignal } from "../base/stop_signal.ts";
import { LineWriter } from "../base/line_writer.ts";

export interface StatusWatchOptions {
  dir: string;
  config: ClusterConfig;
  json: boolean;
  intervalMs?: number;
  tls?: TlsClientOptions | undefined;
  /** Write one line (stdout by default). */
  print?: (line: string) => void;
}

/** One line: instances up, busy, connections, throughput, and file health. */
export function summaryLine(s: WatchSnapshot): string {
  const up = s.instances.filter((i) => i.state === "up" || i.state === "busy").length;
  const busy = s.instances.filter((i) => i.state === "busy").length;
  const connections = s.instances.reduce((n, i) => n + i.connections, 0);
  const out = s.instances.reduce((n, i) => n + i.bytesOutPerSecond, 0);
  if (!s.running) {
    return `0/${s.instances.length} up: no instance answers, the cluster is not running; ` +
      `files: ${s.files.length}, on disk (health unknown until instances answer)`;
  }
  const health = { healthy: 0, degraded: 0, lost: 0, unknown: 0 };
  for (const f of s.files) health[f.health]++;
  return `${up}/${s.instances.length} up, ${busy} busy, ${connections} client connections, ` +
    `${formatBytes(Math.round(out))}/s out; files: ${health.healthy} healthy, ` +
    `${health.degraded} degraded, ${health.lost} lost`;
}

export function clusterTitle(command: string, dir: string, config: ClusterConfig): string {
  const last = config.basePort + config.servers - 1;
  return `${command}  ${config.host}:${config.basePort}-${last}  R=${config.replicas}  ${dir}`;
}

export async function watchStatus(options: StatusWatchOptions): Promise<number> {
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  const stopListening = onStopSignal(onSignal);
  try {
    if (!options.json && LiveScreen.available()) {
      const session = new LiveSession({
        dir: options.dir,
        config: options.config,
        title: clusterTitle("fts status --watch", options.dir, options.config),
        footer: "q or Ctrl-C quits",
        onQuit: onSignal,
        ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
        tls: options.tls,
      });
      session.start();
      await new Promise((resolve) => abort.signal.addEventListener("abort", resolve));
      await session.stop();
      return 0;
    }
    // A reader that went away (`fts status --watch --json | head -n 1`) ends
    // the watch, as it would any Unix tool: console.log would drop the lines
    // and poll on for ever.
    const out = new LineWriter();
    const print = options.print ?? ((line: string) => {
      out.line(line);
      out.flush();
      if (out.closed) abort.abort();
    });
    const watch = watchCluster(options.dir, options.config, {
      signal: abort.signal,
      ...(options.intervalMs !== undefined ? { intervalMs: options.intervalMs } : {}),
      tls: options.tls,
    });
    let first = true;
    for await (const { snapshot, events } of watch) {
      if (options.json) {
        print(JSON.stringify({ type: "snapshot", ...snapshot, events }));
        continue;
      }
      for (const event of events) print(`${clock(event.at)} ${event.text}`);
      if (first || events.length > 0) print(`${clock(snapshot.at)} ${summaryLine(snapshot)}`);
      first = false;
    }
    return 0;
  } finally {
    stopListening();
  }
}
