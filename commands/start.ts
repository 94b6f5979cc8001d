import { boolFlag, expectPositionals, parseFlags, parsePort, stringFlag } from "../lib/cli.ts";
import { dataPaths, requireConfig, resolveDataDir } from "../lib/config.ts";
import { controlRequest, instanceIdForPort, livePid, runningSupervisor } from "../lib/instances.ts";
import { Peer } from "../lib/peer.ts";
import { ftsCommand } from "../lib/spawn.ts";

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
  const paths = dataPaths(dir);
  await Deno.mkdir(paths.logDir, { recursive: true });
  const { program, prefix } = ftsCommand();
  const child = new Deno.Command(program, {
    args: [...prefix, "serve", "--port", id, "--host", config.host, "--data", dir],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  const deadline = Date.now() + START_WAIT_MS;
  while (Date.now() < deadline) {
    try {
      const peer = await Peer.connect(`${config.host}:${id}`, { connectTimeoutMs: 500 });
      peer.close();
      console.log(
        json
          ? JSON.stringify({ ok: true, id, pid: child.pid, supervised: false })
          : `started instance ${id} (pid ${child.pid}), detached: no cluster supervisor is running`,
      );
      return 0;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`Instance ${id} did not come up within ${START_WAIT_MS} ms`);
}
