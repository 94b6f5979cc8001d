import {
  boolFlag,
  expectPositionals,
  parseFlags,
  parsePort,
  stringFlag,
} from "../lib/cli/flags.ts";
import { dataPaths, requireConfig, resolveDataDir } from "../lib/state/config.ts";
import {
  controlRequest,
  instanceIdForPort,
  livePid,
  runningSupervisor,
} from "../lib/ops/instances.ts";
import { loadServeFlags } from "../lib/state/serve_flags.ts";
import { instanceCommand } from "../lib/ops/instance_bundle.ts";
import { TLS_CA_ENV } from "../lib/wire/tls.ts";

export const USAGE = "fts start PORT [--json] [--data DIR]";

export const EXAMPLE = [
  "fts start 9012",
].join("\n");

/** How long a detached instance may take to answer. */
const START_WAIT_MS = 20_000;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { data: { type: "string" }, json: { type: "boolean" } });
  const json = boolFlag(flags, "json");
  const [portText] = expectPositionals(flags, 1, 1, USAGE);
  const port = parsePort(portText);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await requireConfig(dir);
  const id = instanceIdForPort(config, dir, port);
  const running = await livePid(dir, id);
  if (running !== undefined) throw new Error(`Instance ${id} is already up (pid ${running})`);

  const supervisor = await runningSupervisor(dir);
  if (supervisor) {
    // The supervisor owns its instances: it starts this one and will stop it on exit.
    const reply = await controlRequest(supervisor, { op: "start", id });
    if (reply.ok !== true) throw new Error(`Cannot start instance ${id}: ${reply.error}`);
    console.log(
      json
        ? JSON.stringify({ ok: true, id, pid: reply.pid, supervised: true })
        : `started instance ${id} (pid ${reply.pid}) under the cluster supervisor`,
    );
    return 0;
  }
  return await _startDetached(dir, config.host, id, json);
}

/**
 * Starts an instance on its own, with the flags the last cluster gave its
 * instances (serve_flags.ts), its output appended to its log, and waits until
 * it listens, or says why it exited.
 */
async function _startDetached(
  dir: string,
  host: string,
  id: string,
  json: boolean,
): Promise<number> {
  const paths = dataPaths(dir);
  const flags = await loadServeFlags(dir);
  await Deno.mkdir(paths.logDir, { recursive: true });
  const log = paths.logFile(id);
  // What this run appends starts here (the log keeps earlier runs' lines).
  const logStart = await Deno.stat(log).then((info) => info.size, () => 0);
  const { program, prefix } = await instanceCommand(paths.runDir);
  // The instance outlives this command, so its output goes straight to the log
  // (through a shell's redirection), not through a pipe that would close.
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'exec "$@" >>"$FTS_INSTANCE_LOG" 2>&1',
      "sh",
      program,
      ...prefix,
      "serve",
      "--port",
      id,
      "--host",
      host,
      "--data",
      dir,
      ...flags.args,
    ],
    env: {
      FTS_INSTANCE_LOG: log,
      ...(flags.tlsCa !== undefined ? { [TLS_CA_ENV]: flags.tlsCa } : {}),
    },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  let exited: Deno.CommandStatus | undefined;
  void child.status.then((status) => exited = status);
  child.unref();
  // Up once it has written its pid file, which it does once it listens (our
  // child, so its pid is enough: no need to recognise its command line).
  const pidFile = paths.pidFile(id);
  const deadline = Date.now() + START_WAIT_MS;
  while (Date.now() < deadline) {
    const recorded = await Deno.readTextFile(pidFile).then((t) => t.trim(), () => "");
    if (exited === undefined && recorded === String(child.pid)) {
      const detail = flags.args.length > 0
        ? `; with the last cluster's flags: ${flags.args.join(" ")}`
        : "";
      console.log(
        json
          ? JSON.stringify({
            ok: true,
            id,
            pid: child.pid,
            supervised: false,
            serveArgs: flags.args,
          })
          : `started instance ${id} (pid ${child.pid}), detached: no cluster supervisor is running${detail}; log: ${log}`,
      );
      return 0;
    }
    if (exited !== undefined) {
      throw new Error(
        `Instance ${id} exited (code ${exited.code}) before it listened: ${await _lastLine(
          log,
          logStart,
        )} (log: ${log})`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    Deno.kill(child.pid, "SIGTERM");
  } catch { /* gone */ }
  throw new Error(`Instance ${id} did not come up within ${START_WAIT_MS} ms (log: ${log})`);
}

/** The last non-empty line the log gained after byte `from`, or a placeholder. */
async function _lastLine(path: string, from: number): Promise<string> {
  const none = "(it logged nothing)";
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(path, { read: true });
    // The tail is enough for a last line; the log may be long.
    const { size } = await file.stat();
    const start = Math.max(from, size - 64 * 1024);
    await file.seek(start, Deno.SeekMode.Start);
    const buffer = new Uint8Array(Math.max(0, size - start));
    let read = 0;
    while (read < buffer.length) {
      const n = await file.read(buffer.subarray(read));
      if (n === null) break;
      read += n;
    }
    const text = new TextDecoder().decode(buffer.subarray(0, read));
    return text.trimEnd().split("\n").at(-1) || none;
  } catch {
    return none;
  } finally {
    file?.close();
  }
}
