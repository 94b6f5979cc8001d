import {
  boolFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  listFlag,
  parseFlags,
  stringFlag,
} from "../lib/cli/flags.ts";
import { type FileEntry, normalizeFileName, validateFileName } from "../lib/state/manifest.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { allSummaries, type ManifestStore } from "../lib/state/manifest_store.ts";
import { locateFile, notFoundMessage } from "../lib/client/locate.ts";
import { loadConfig, resolveDataDir } from "../lib/state/config.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import type { FileSummary } from "../lib/client/peer.ts";
import { listFromServers } from "../lib/client/list_files.ts";
import { resolveServers } from "../lib/client/servers.ts";
import { loadTlsClientOptions, type TlsClientOptions } from "../lib/wire/tls.ts";
import { formatBytes } from "../lib/base/units.ts";
import { displayWidth, padEndColumns, truncateColumns } from "../lib/base/display_width.ts";
import { printable } from "../lib/base/printable.ts";
import { LineWriter } from "../lib/base/line_writer.ts";

export const USAGE =
  "fts ls [NAME] [--json] [--server HOST:PORT]... [--tls-ca FILE] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts ls",
  "fts ls --server 10.0.0.5:9001 --json",
  "fts ls movie.mkv --json --etcd http://10.0.0.1:2379   # one file's parts and their replicas",
].join("\n");

/** One file's entry: where each part is, as the manifest says. */
async function _entry(
  name: string,
  store: ManifestStore | undefined,
  servers: () => Promise<string[]>,
  tls: TlsClientOptions | undefined,
): Promise<FileEntry> {
  if (store) {
    const found = await store.get(name);
    if (found) return found.entry;
    const names: string[] = [];
    for await (const { summary } of allSummaries(store)) names.push(summary.name);
    throw new UsageError(notFoundMessage(name, names));
  }
  return (await locateFile(name, await servers(), tls ? { tls } : {})).entry;
}

function _printEntry(entry: FileEntry, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(entry, null, 2));
    return;
  }
  console.log(
    `${printable(entry.name)}: ${formatBytes(entry.size)} in ${entry.parts.length} parts of ${
      formatBytes(entry.partSize)
    }, owner ${printable(entry.owner)}`,
  );
  for (const [index, part] of entry.parts.entries()) {
    console.log(
      `  part ${index}  ${part.digest.slice(0, 16)}  ${printable(part.replicas.join(" "))}`,
    );
  }
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    server: { type: "string", multiple: true },
    json: { type: "boolean" },
    "tls-ca": { type: "string" },
    ...ETCD_FLAGS,
  });
  const typed = expectPositionals(flags, 0, 1, USAGE)[0];
  const name = typed === undefined ? undefined : normalizeFileName(typed);
  if (name !== undefined) {
    try {
      validateFileName(name);
    } catch (cause) {
      throw new UsageError((cause as Error).message, { cause });
    }
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const named = listFlag(flags, "server");
  const etcd = etcdTarget(flags);
  const tls = await loadTlsClientOptions(stringFlag(flags, "tls-ca"));
  const local = named.length === 0 && !Deno.env.get("FTS_SERVERS") &&
    (etcd !== undefined || (await loadConfig(dir)) !== undefined);
  let store: ManifestStore | undefined;
  let close = () => {};
  if (local && etcd) {
    // The manifest is in etcd: read it there, page by page, cluster up or not.
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    await cluster.requireSettings();
    store = cluster.manifest;
    close = () => cluster.close();
  } else if (local) {
    // Local data directory: the manifest is right here, cluster up or not.
    store = openManifestStore(dir);
  }
  try {
    if (name !== undefined) {
      _printEntry(
        await _entry(name, store, () => resolveServers(dir, named, etcd), tls),
        boolFlag(flags, "json"),
      );
      return 0;
    }
    let files: FileSummary[];
    if (store) {
      files = [];
      for await (const { summary } of allSummaries(store)) files.push(summary);
    } else {
      files = await listFromServers(await resolveServers(dir, named), tls);
    }
    return _printFiles(files, boolFlag(flags, "json"));
  } finally {
    close();
  }
}

function _printFiles(files: FileSummary[], json: boolean): number {
  files.sort((a, b) => a.name.localeCompare(b.name));
  if (json) {
    console.log(JSON.stringify(files, null, 2));
    return 0;
  }
  if (files.length === 0) {
    console.log("no files");
    return 0;
  }
  // Names and owners come from the network: escaped, and measured in terminal columns.
  const names = files.map((f) => printable(f.name));
  const width = Math.max(...names.map(displayWidth), 4);
  const out = new LineWriter();
  out.line(`${"NAME".padEnd(width)}  ${"SIZE".padStart(10)}  ${"PARTS".padStart(6)}  OWNER`);
  for (const [index, f] of files.entries()) {
    const owner = printable(f.owner);
    out.line(
      `${padEndColumns(names[index]!, width)}  ${formatBytes(f.size).padStart(10)}  ${
        String(f.parts).padStart(6)
      }  ${displayWidth(owner) > 24 ? truncateColumns(owner, 21) + "..." : owner}`,
    );
  }
  out.flush();
  return 0;
}
