import {
  boolFlag,
  expectPositionals,
  parseFlags,
  parsePort,
  stringFlag,
} from "../lib/cli/flags.ts";
import { requireConfig, resolveDataDir } from "../lib/state/config.ts";
import { processAlive } from "../lib/base/fs_util.ts";
import { instanceIdForPort, livePid } from "../lib/ops/instances.ts";

export const USAGE = "fts kill PORT [--json] [--data DIR]";

export const EXAMPLE = [
  "fts kill 9012   # SIGKILL, as a machine failure would",
].join("\n");

/** How long to wait for a killed instance to be gone. */
const KILL_WAIT_MS = 5_000;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { data: { type: "string" }, json: { type: "boolean" } });
  const [portText] = expectPositionals(flags, 1, 1, USAGE);
  const port = parsePort(portText);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const config = await requireConfig(dir);
  const id = instanceIdForPort(config, dir, port);
  const pid = await livePid(dir, id);
  if (pid === undefined) {
    throw new Error(`Instance ${id} is already down (fts start ${id} brings it back)`);
  }
  // SIGKILL: no cleanup, no goodbye; exactly what a machine failure looks like.
  try {
    Deno.kill(pid, "SIGKILL");
  } catch (cause) {
    if (!(cause instanceof Deno.errors.PermissionDenied)) throw cause;
    // Not a path's permissions: a process of another user's.
    throw new Error(
      `Cannot kill instance ${id} (pid ${pid}): it runs as another user; run fts kill as that ` +
        `user (or root)`,
      { cause },
    );
  }
  const deadline = Date.now() + KILL_WAIT_MS;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  console.log(
    boolFlag(flags, "json")
      ? JSON.stringify({ ok: true, id, pid })
      : `killed instance ${id} (pid ${pid})`,
  );
  return 0;
}
