import { boolFlag, listFlag, parseFlags, stringFlag } from "../lib/cli/flags.ts";
import { loadConfig, resolveDataDir } from "../lib/state/config.ts";
import { allEntries } from "../lib/state/manifest_store.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { type FileSummary, Peer } from "../lib/client/peer.ts";
import { resolveServers } from "../lib/client/servers.ts";
import {
  loadTlsClientOptions,
  preferredTlsError,
  type TlsClientOptions,
  TlsError,
} from "../lib/wire/tls.ts";
import { formatBytes } from "../lib/base/units.ts";

export const USAGE = "fts ls [--json] [--server HOST:PORT]... [--tls-ca FILE] [--data DIR]";

export const EXAMPLE = [
  "fts ls",
  "fts ls --server 10.0.0.5:9001 --json",
].join("\n");

async function _fromServers(
  servers: string[],
  tls: TlsClientOptions | undefined,
): Promise<FileSummary[]> {
  const reasons: string[] = [];
  const tlsErrors: TlsError[] = [];
  for (const address of servers) {
    let peer: Peer | undefined;
    try {
      peer = await Peer.connect(address, { connectTimeoutMs: 1_000, stallTimeoutMs: 3_000, tls });
      return await peer.listFiles();
    } catch (error) {
      if (error instanceof TlsError) tlsErrors.push(error);
      reasons.push(`${address}: ${(error as Error).message}`);
    } finally {
      peer?.close();
    }
  }
  const tlsError = preferredTlsError(tlsErrors, servers.length);
  if (tlsError) throw tlsError;
  throw new Error(`Cannot reach any server (tried ${servers.length}); is the cluster running?`, {
    cause: new Error(reasons.slice(0, 3).join("; ")),
  });
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    server: { type: "string", multiple: true },
    json: { type: "boolean" },
    "tls-ca": { type: "string" },
  });
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const named = listFlag(flags, "server");
  let files: FileSummary[];
  if (named.length === 0 && !Deno.env.get("FTS_SERVERS") && (await loadConfig(dir))) {
    // Local data directory: the manifest is right here, cluster up or not.
    files = [];
    for await (const { entry: f } of allEntries(openManifestStore(dir))) {
      files.push({
        name: f.name,
        size: f.size,
        parts: f.parts.length,
        owner: f.owner,
        created: f.created,
      });
    }
  } else {
    const tls = await loadTlsClientOptions(stringFlag(flags, "tls-ca"));
    files = await _fromServers(await resolveServers(dir, named), tls);
  }
  files.sort((a, b) => a.name.localeCompare(b.name));
  if (boolFlag(flags, "json")) {
    console.log(JSON.stringify(files, null, 2));
    return 0;
  }
  if (files.length === 0) {
    console.log("no files");
    return 0;
  }
  const width = Math.max(...files.map((f) => f.name.length), 4);
  console.log(`${"NAME".padEnd(width)}  ${"SIZE".padStart(10)}  ${"PARTS".padStart(6)}  OWNER`);
  for (const f of files) {
    console.log(
      `${f.name.padEnd(width)}  ${formatBytes(f.size).padStart(10)}  ${
        String(f.parts).padStart(6)
      }  ${f.owner.length > 24 ? f.owner.slice(0, 21) + "..." : f.owner}`,
    );
  }
  return 0;
}
