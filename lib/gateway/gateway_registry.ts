/**
 * The gateways running for one data directory, so that each one's Metalink
 * documents list the others as mirrors: every gateway records its base URL in
 * `run/gateways/PID.json` while it runs and removes the record when it stops.
 * A record whose process is gone (a gateway killed with SIGKILL) is ignored,
 * and removed by the next gateway that starts.
 */
import { processAlive, readJsonFile, writeFileAtomic } from "../base/fs_util.ts";
import { join } from "../base/paths.ts";
import { dataPaths } from "../state/config.ts";

export interface GatewayRecord {
  url: string;
  pid: number;
  started: string;
}

function _registryDir(dir: string): string {
  return join(dataPaths(dir).runDir, "gateways");
}

/** Records this process's gateway; the returned function removes the record. */
export async function recordGateway(dir: string, url: string): Promise<() => Promise<void>> {
  const registry = _registryDir(dir);
  await Deno.mkdir(registry, { recursive: true });
  for (const record of await _records(registry)) {
    if (!processAlive(record.pid)) await Deno.remove(record.path).catch(() => {});
  }
  const path = join(registry, `${Deno.pid}.json`);
  const record: GatewayRecord = { url, pid: Deno.pid, started: new Date().toISOString() };
  await writeFileAtomic(path, JSON.stringify(record) + "\n", { durable: false });
  return async () => {
    await Deno.remove(path).catch(() => {});
  };
}

/** Base URLs of the gateways of `dir` whose process is alive, this one excluded. */
export async function runningGateways(dir: string): Promise<string[]> {
  const records = await _records(_registryDir(dir));
  return records
    .filter((r) => r.pid !== Deno.pid && processAlive(r.pid))
    .map((r) => r.url)
    .sort();
}

async function _records(registry: string): Promise<(GatewayRecord & { path: string })[]> {
  const found: (GatewayRecord & { path: string })[] = [];
  try {
    for await (const entry of Deno.readDir(registry)) {
      if (!entry.isFile || !/^\d+\.json$/.test(entry.name)) continue;
      const path = join(registry, entry.name);
      const value = await readJsonFile(path).catch(() => undefined) as
        | Partial<GatewayRecord>
        | undefined;
      if (typeof value?.url === "string" && Number.isInteger(value.pid)) {
        found.push({ url: value.url, pid: value.pid!, started: String(value.started), path });
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found;
}
