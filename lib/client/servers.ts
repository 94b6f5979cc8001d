/** Which servers a client talks to: named on the command line, or the cluster in DIR. */
import { instanceAddress, instanceIds, loadConfig } from "../state/config.ts";
import { UsageError } from "../wire/errors.ts";
import { parseAddress } from "./peer.ts";

/**
 * `--server HOST:PORT` flags, then FTS_SERVERS (comma or space separated), then
 * every instance of the cluster recorded in the data directory.
 */
export async function resolveServers(dir: string, flagged: string[]): Promise<string[]> {
  const named = flagged.length > 0
    ? flagged
    : (Deno.env.get("FTS_SERVERS") ?? "").split(/[\s,]+/).filter((s) => s.length > 0);
  if (named.length > 0) {
    for (const address of named) {
      try {
        parseAddress(address);
      } catch (cause) {
        throw new UsageError((cause as Error).message, { cause });
      }
    }
    return named;
  }
  const config = await loadConfig(dir);
  if (!config) {
    throw new UsageError(
      `No cluster in ${dir} and no --server given: pass --server HOST:PORT, set FTS_SERVERS, or --data DIR`,
    );
  }
  return instanceIds(config).map((id) => instanceAddress(config, id));
}
