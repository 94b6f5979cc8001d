import {
  boolFlag,
  CLUSTER_FLAGS,
  clusterFlags,
  durationFlag,
  isTerminal,
  type ParsedFlags,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { ensureConfig, resolveDataDir } from "../lib/state/config.ts";
import { Supervisor } from "../lib/ops/cluster.ts";
import { DEFAULT_HEAL_AFTER_MS, HEAL_RETRY_MS, type HealEvent } from "../lib/ops/heal.ts";
import { runningSupervisor } from "../lib/ops/instances.ts";
import { resolve } from "../lib/base/paths.ts";
import { DEFAULT_REPAIR_RATE_BYTES_PER_SECOND } from "../lib/ops/repair.ts";
import { startingUnlessUp } from "../lib/ui/cluster_watch.ts";
import { LiveScreen } from "../lib/ui/live_screen.ts";
import { LiveSession } from "../lib/ui/live_session.ts";
import { clusterStatus } from "../lib/ops/status.ts";
import { clusterTitle } from "../lib/ui/status_watch.ts";
import { formatBytes, formatDuration } from "../lib/base/units.ts";
import { formatRepairEvent, formatRepairSummary } from "../lib/ui/repair_format.ts";
import { formatStatus } from "../lib/ui/status_format.ts";
import { loadTlsClientOptions, loadTlsServerOptions, TLS_CA_ENV } from "../lib/wire/tls.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";

export const USAGE =
  "fts cluster [--servers 50] [--base-port 9001] [--replicas 5] [--limit-rate RATE per instance] [--heal-after 60s (0: off)] [--heal-rate 64MiB] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]] [--plain] [--quiet] [--data DIR]";

export const EXAMPLE = [
  "fts cluster                                  # 50 instances on 9001-9050, live view on a terminal",
  "fts cluster --servers 10 --replicas 3 --plain  # plain lines instead of the live view",
].join("\n");

const HELP_LINES = "commands: kill PORT, start PORT, status, quit";
const LIVE_HELP = "kill PORT · start PORT · status · quit   (Ctrl-C also stops every instance)";

function _time(): string {
  return new Date().toISOString().slice(11, 19);
}

/** What healing did, in the cluster's output: each run's cause and outcome, and any trouble. */
function _printHeal(event: HealEvent): void {
  if (event.type === "start") {
    console.log(`${_time()} heal: ${event.reason}: checking every part's copies`);
  } else if (event.type === "done") {
    console.log(`${_time()} heal: ${formatRepairSummary(event.report, event.elapsedMs)}`);
  } else if (event.type === "error") {
    console.log(
      `${_time()} heal: failed: ${event.message}; trying again in ${formatDuration(HEAL_RETRY_MS)}`,
    );
  } else if (["corrupt", "copy-failed", "short", "lost"].includes(event.event.type)) {
    // Each copy and drop is in the summary; trouble gets a line of its own.
    const line = formatRepairEvent(event.event);
    if (line !== undefined) console.log(`${_time()} heal: ${line}`);
  }
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...CLUSTER_FLAGS,
    quiet: { type: "boolean" },
    plain: { type: "boolean" },
    "limit-rate": { type: "string" },
    "heal-after": { type: "string" },
    "heal-rate": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "tls-ca": { type: "string" },
  });
  const requested = clusterFlags(flags);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await ensureConfig(dir, requested);
  const existing = await runningSupervisor(dir);
  if (existing) throw new Error(`A cluster is already running for ${dir} (pid ${existing.pid})`);

  const quiet = boolFlag(flags, "quiet");
  let ready = false;
  const healAfterMs = durationFlag(flags, "heal-after") ?? DEFAULT_HEAL_AFTER_MS;
  const healRate = sizeFlag(flags, "heal-rate") ?? DEFAULT_REPAIR_RATE_BYTES_PER_SECOND;
  const limitRate = sizeFlag(flags, "limit-rate");
  const serveArgs = limitRate !== undefined ? ["--limit-rate", String(limitRate)] : [];
  serveArgs.push(...(await _tlsServeArgs(flags)));
  const supervisor = new Supervisor(dir, config, (event) => {
    if (event.type === "down") {
      const how = event.signal ? `killed by ${event.signal}` : `exited with code ${event.code}`;
      console.log(`${_time()} instance ${event.id} down (${how})`);
    } else if (ready) {
      console.log(`${_time()} instance ${event.id} up (pid ${event.pid})`);
    }
  }, { serveArgs, healAfterMs, healRateBytesPerSecond: healRate, onHeal: _printHeal });

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= supervisor.stopAll());
  const done = Promise.withResolvers<number>();
  const onSignal = () => void stop().then(() => done.resolve(0));
  const stopListening = onStopSignal(onSignal);

  // On a terminal: the live view, from the start so instances are seen coming up.
  // What this command prints from here on shows as the view's events.
  const live = !quiet && !boolFlag(flags, "plain") && LiveScreen.available()
    ? new LiveSession({
      dir,
      config,
      title: clusterTitle("fts cluster", dir, config),
      // Until ready, an instance not up yet is starting, not down.
      states: () => ready ? supervisor.states() : startingUnlessUp(supervisor.states()),
      upDown: false,
      ...(isTerminal(Deno.stdin)
        ? { commands: { help: LIVE_HELP, run: (line) => _runCommand(line, supervisor, onSignal) } }
        : { footer: "Ctrl-C stops every instance" }),
      onQuit: onSignal,
    })
    : undefined;
  live?.start();
  const started = performance.now();
  const last = config.basePort + config.servers - 1;
  try {
    await supervisor.startAll();
  } catch (error) {
    await stop();
    for (const line of (await live?.stop()) ?? []) console.log(line);
    throw error;
  }
  ready = true;
  console.log(
    `fts cluster: ready: ${config.servers} instances listening on ${config.host}:${config.basePort}-${last}` +
      ` (R=${config.replicas}, data in ${dir}, ${
        formatDuration(performance.now() - started)
      }); Ctrl-C stops them all`,
  );
  console.log(
    healAfterMs > 0
      ? `fts cluster: healing: the parts of an instance down for ${
        formatDuration(healAfterMs)
      } are copied elsewhere (at most ${
        healRate > 0 ? `${formatBytes(healRate)}/s` : "full speed"
      }); --heal-after 0 turns it off`
      : "fts cluster: healing is off (--heal-after 0); fts repair heals by hand",
  );

  if (isTerminal(Deno.stdin) && !quiet && !live) {
    console.log(HELP_LINES);
    void _commandLoop(supervisor, () => onSignal());
  }
  const code = await done.promise;
  // The view's events, printed again on the normal screen as a record.
  for (const line of (await live?.stop()) ?? []) console.log(line);
  stopListening();
  console.log("fts cluster: all instances stopped");
  return code;
}

/**
 * TLS flags for every instance, checked here once rather than in each child.
 * With --tls-ca (or FTS_TLS_CA), healing's own connections use TLS too.
 */
async function _tlsServeArgs(flags: ParsedFlags): Promise<string[]> {
  const cert = stringFlag(flags, "tls-cert");
  const key = stringFlag(flags, "tls-key");
  if (!(await loadTlsServerOptions(cert, key))) return [];
  const ca = stringFlag(flags, "tls-ca");
  if (ca !== undefined) {
    await loadTlsClientOptions(ca);
    Deno.env.set(TLS_CA_ENV, resolve(ca));
  }
  return ["--tls-cert", resolve(cert!), "--tls-key", resolve(key!)];
}

async function _commandLoop(supervisor: Supervisor, quit: () => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      await _runCommand(line, supervisor, quit);
    }
  }
  quit();
}

/** One line of the interactive loop (or the live view's command line); prints its outcome. */
async function _runCommand(line: string, supervisor: Supervisor, quit: () => void): Promise<void> {
  const [word, arg] = line.split(/\s+/);
  try {
    if (!word) return;
    if (word === "quit" || word === "exit") return quit();
    if (word === "status") {
      console.log(formatStatus(await clusterStatus(supervisor.dir, supervisor.config)));
    } else if ((word === "kill" || word === "start") && arg && /^\d+$/.test(arg)) {
      if (word === "kill") {
        const pid = supervisor.kill(arg);
        console.log(`killed instance ${arg} (pid ${pid})`);
      } else {
        await supervisor.start(arg);
      }
    } else {
      console.log(`unknown command "${line}"; ${HELP_LINES}`);
    }
  } catch (error) {
    console.log(`error: ${error instanceof Error ? error.message : String(error)}`);
  }
}
