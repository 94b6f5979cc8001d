import { boolFlag, intFlag, isTerminal, parseFlags, sizeFlag, stringFlag } from "../lib/cli.ts";
import { type ClusterConfig, ensureConfig, MAX_SERVERS, resolveDataDir } from "../lib/config.ts";
import { Supervisor } from "../lib/cluster.ts";
import { runningSupervisor } from "../lib/instances.ts";
import { clusterStatus } from "../lib/status.ts";
import { formatDuration } from "../lib/units.ts";
import { formatStatus } from "./status.ts";

export const USAGE =
  "fts cluster [--servers 50] [--base-port 9001] [--replicas 5] [--limit-rate RATE per instance] [--data DIR]";

const HELP_LINES = "commands: kill PORT, start PORT, status, quit";

function _time(): string {
  return new Date().toISOString().slice(11, 19);
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    servers: { type: "string" },
    "base-port": { type: "string" },
    replicas: { type: "string" },
    host: { type: "string" },
    quiet: { type: "boolean" },
    "limit-rate": { type: "string" },
  });
  const requested: Partial<ClusterConfig> = {};
  const servers = intFlag(flags, "servers", 1, MAX_SERVERS);
  const basePort = intFlag(flags, "base-port", 1, 65535);
  const replicas = intFlag(flags, "replicas", 1, MAX_SERVERS);
  const host = stringFlag(flags, "host");
  if (servers !== undefined) requested.servers = servers;
  if (basePort !== undefined) requested.basePort = basePort;
  if (replicas !== undefined) requested.replicas = replicas;
  if (host !== undefined) requested.host = host;
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await ensureConfig(dir, requested);
  const existing = await runningSupervisor(dir);
  if (existing) throw new Error(`A cluster is already running for ${dir} (pid ${existing.pid})`);

  const quiet = boolFlag(flags, "quiet");
  let ready = false;
  const limitRate = sizeFlag(flags, "limit-rate");
  const serveArgs = limitRate !== undefined ? ["--limit-rate", String(limitRate)] : [];
  const supervisor = new Supervisor(dir, config, (event) => {
    if (event.type === "down") {
      const how = event.signal ? `killed by ${event.signal}` : `exited with code ${event.code}`;
      console.log(`${_time()} instance ${event.id} down (${how})`);
    } else if (ready) {
      console.log(`${_time()} instance ${event.id} up (pid ${event.pid})`);
    }
  }, { serveArgs });

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= supervisor.stopAll());
  const done = Promise.withResolvers<number>();
  const onSignal = () => void stop().then(() => done.resolve(0));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const started = performance.now();
  const last = config.basePort + config.servers - 1;
  try {
    await supervisor.startAll();
  } catch (error) {
    await stop();
    throw error;
  }
  ready = true;
  console.log(
    `fts cluster: ready: ${config.servers} instances listening on ${config.host}:${config.basePort}-${last}` +
      ` (R=${config.replicas}, data in ${dir}, ${
        formatDuration(performance.now() - started)
      }); Ctrl-C stops them all`,
  );

  if (isTerminal(Deno.stdin) && !quiet) {
    console.log(HELP_LINES);
    void _commandLoop(supervisor, dir, config, () => onSignal());
  }
  const code = await done.promise;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  console.log("fts cluster: all instances stopped");
  return code;
}

async function _commandLoop(
  supervisor: Supervisor,
  dir: string,
  config: ClusterConfig,
  quit: () => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      const [word, arg] = line.split(/\s+/);
      try {
        if (!word) continue;
        if (word === "quit" || word === "exit") return quit();
        if (word === "status") {
          console.log(formatStatus(await clusterStatus(dir, config)));
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
  }
  quit();
}
