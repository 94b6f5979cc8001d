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
import {
  type ClusterConfig,
  instanceAddress,
  instanceIds,
  loadConfig,
  resolveDataDir,
} from "../lib/state/config.ts";
import { livePid } from "../lib/ops/instances.ts";
import { shuffled } from "../lib/base/shuffled.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { requireManifestIfParts } from "../lib/state/manifest_guard.ts";
import { storesOnHost } from "../lib/state/part_gc.ts";
import type { FileSummary } from "../lib/client/peer.ts";
import { listedFilePages } from "../lib/client/list_files.ts";
import { instanceTls, resolveServers } from "../lib/client/servers.ts";
import type { TlsClientOptions } from "../lib/wire/tls.ts";
import { formatBytes, plural } from "../lib/base/units.ts";
import { displayWidth, padEndColumns, truncateColumns } from "../lib/base/display_width.ts";
import { printable } from "../lib/base/printable.ts";
import { LineWriter } from "../lib/base/line_writer.ts";
import { isTerminal, terminalSize } from "../lib/base/terminal.ts";

export const USAGE =
  "fts ls [NAME] [--json] [--server HOST:PORT]... [--tls-ca FILE] [--data DIR | --etcd URLS [--cluster NAME]]";

/** Files whose names set the width of the table's name column. */
const WIDTH_SAMPLE_FILES = 1000;

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
    // An entry stored before names were normalised (NFD, as macOS spells them): the same name.
    const stored = names.find((n) => n !== name && n.normalize("NFC") === name);
    const entry = stored === undefined ? undefined : (await store.get(stored))?.entry;
    if (entry) return entry;
    throw new Error(notFoundMessage(name, names));
  }
  return (await locateFile(name, await servers(), tls ? { tls } : {})).entry;
}

function _printEntry(entry: FileEntry, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(entry, null, 2));
    return;
  }
  console.log(
    `${printable(entry.name)}: ${formatBytes(entry.size)} in ${
      plural(entry.parts.length, "part")
    } of ${formatBytes(entry.partSize)}, owner ${printable(entry.owner)}`,
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
  const tls = await instanceTls(dir, named, etcd, stringFlag(flags, "tls-ca"));
  const serversNamed = named.length > 0 || Boolean(Deno.env.get("FTS_SERVERS"));
  // Read only when neither servers nor etcd are named (a broken config elsewhere is not ls's).
  const config = serversNamed || etcd !== undefined ? undefined : await loadConfig(dir);
  const local = !serversNamed && (etcd !== undefined || config !== undefined);
  let store: ManifestStore | undefined;
  // This data directory's running instances, which hold the store's index already.
  let running: string[] = [];
  let close = () => {};
  if (local && etcd) {
    // The manifest is in etcd: read it there, page by page, cluster up or not.
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    await cluster.requireSettings();
    store = cluster.manifest;
    close = () => cluster.close();
  } else if (local) {
    // Local data directory: the manifest is right here, cluster up or not. One
    // missing beside stored parts is lost, not empty: "no files" would be wrong.
    await requireManifestIfParts(dir, () => storesOnHost(dir));
    store = openManifestStore(dir);
    running = await _runningInstances(dir, config!);
  }
  try {
    if (name !== undefined) {
      _printEntry(
        await _entry(name, store, () => resolveServers(dir, named, etcd), tls),
        boolFlag(flags, "json"),
      );
      return 0;
    }
    const pages = store
      ? _localFiles(store, running, tls)
      : listedFilePages(await resolveServers(dir, named), tls);
    await _printFiles(pages, boolFlag(flags, "json"));
    return 0;
  } finally {
    close();
  }
}

/**
 * Instances of a local cluster a listing asks before it reads the store: a
 * hung one costs the listing LIST_STALL_TIMEOUT_MS before the next is tried.
 */
const MAX_LISTING_INSTANCES = 2;

/** Up to MAX_LISTING_INSTANCES of the running instances of the cluster in `dir`, at random. */
async function _runningInstances(dir: string, config: ClusterConfig): Promise<string[]> {
  const ids = instanceIds(config);
  const pids = await Promise.all(ids.map((id) => livePid(dir, id)));
  const running = ids.filter((_, i) => pids[i] !== undefined);
  return shuffled(running).slice(0, MAX_LISTING_INSTANCES).map((id) => instanceAddress(config, id));
}

/**
 * The files of the file store in `dir`: from its running instances, which
 * hold its index (the store itself must scan every line of its snapshot
 * before its first page: at 100,000 files the first line came after 0.35 s
 * that way, against 0.14 s at 100), and from the store itself when none
 * answers, going on after the last file an instance gave.
 */
async function* _localFiles(
  store: ManifestStore,
  running: string[],
  tls: TlsClientOptions | undefined,
): AsyncGenerator<FileSummary[]> {
  let after: string | undefined;
  if (running.length > 0) {
    try {
      for await (const page of listedFilePages(running, tls)) {
        after = page.at(-1)?.name ?? after;
        yield page;
      }
      return;
    } catch { /* No instance could go on: the store can. */ }
  }
  yield* _storeFiles(store, after);
}

/**
 * The store's files page by page in its name order (after `from`, if
 * given). Later pages are asked at the first page's revision: etcd answers
 * from that revision, and the file store, which keeps no history, from its
 * newest (a listing goes on past a change, as `ls` of a directory does).
 */
async function* _storeFiles(
  store: ManifestStore,
  from?: string,
): AsyncGenerator<FileSummary[]> {
  let pending = store.summaries(from === undefined ? {} : { after: from });
  let revision: number | undefined;
  while (true) {
    const page = await pending;
    revision ??= page.revision;
    const more = page.more && page.summaries.length > 0;
    if (more) {
      // The next page is asked for before this one is printed, so that the
      // store's work on it overlaps the printing.
      const after = page.summaries.at(-1)!.name;
      pending = store.summaries({ after, atRevision: revision, limit: store.walkPageEntries });
      pending.catch(() => {}); // Seen by the next await; unseen if the reader left.
    }
    yield page.summaries;
    if (!more) return;
  }
}

/**
 * Prints the files page by page as they come, never holding more than the
 * first WIDTH_SAMPLE_FILES: in the table, their names set the width of the
 * name column (a longer name further on widens its own line only).
 */
async function _printFiles(pages: AsyncIterable<FileSummary[]>, json: boolean): Promise<void> {
  const out = new LineWriter();
  const iterator = pages[Symbol.asyncIterator]();
  try {
    if (json) await _printJson(iterator, out);
    else await _printTable(iterator, out);
  } finally {
    // A reader that went away (fts ls | head) ends the walk: no more pages asked.
    await iterator.return?.();
    out.flush();
  }
}

/** The text JSON.stringify(files, null, 2) gives, one element at a time. */
async function _printJson(pages: AsyncIterator<FileSummary[]>, out: LineWriter): Promise<void> {
  let held: string | undefined;
  for (let next = await pages.next(); !next.done && !out.closed; next = await pages.next()) {
    for (const file of next.value) {
      out.line(held === undefined ? "[" : `  ${held},`);
      held = JSON.stringify(file, null, 2).replaceAll("\n", "\n  ");
    }
    out.flush();
  }
  out.line(held === undefined ? "[]" : `  ${held}\n]`);
}

/** Owners longer than this end in "..." in the table. */
const MAX_OWNER_COLUMNS = 24;
/** The columns of a row besides its name and owner: sizes, part counts and the gaps. */
const _OTHER_COLUMNS = 2 + 10 + 2 + 6 + 2;

/**
 * The table's name column: as wide as the longest of the names sampled, but
 * on a terminal no wider than leaves room for the rest of the row, so that
 * one long name does not make every row wrap; a name longer than that
 * overflows its own line only.
 */
function _nameColumnWidth(
  names: readonly number[],
  ownerColumns: number,
  terminalColumns: number | undefined,
): number {
  const widest = Math.max(...names, "NAME".length);
  if (terminalColumns === undefined) return widest;
  return Math.max("NAME".length, Math.min(widest, terminalColumns - _OTHER_COLUMNS - ownerColumns));
}

async function _printTable(pages: AsyncIterator<FileSummary[]>, out: LineWriter): Promise<void> {
  const first: FileSummary[] = [];
  let next: IteratorResult<FileSummary[]> | undefined;
  while (first.length < WIDTH_SAMPLE_FILES) {
    next = await pages.next();
    if (next.done) break;
    first.push(...next.value);
  }
  if (first.length === 0) {
    out.line("no files");
    return;
  }
  // Names and owners come from the network: escaped, and measured in terminal columns.
  const owners = first.map((f) => Math.min(displayWidth(printable(f.owner)), MAX_OWNER_COLUMNS));
  const width = _nameColumnWidth(
    first.map((f) => displayWidth(printable(f.name))),
    Math.max(...owners, "OWNER".length),
    isTerminal(Deno.stdout) ? terminalSize().columns : undefined,
  );
  const rows = (files: FileSummary[]) => {
    for (const f of files) {
      const owner = printable(f.owner);
      out.line(
        `${padEndColumns(printable(f.name), width)}  ${formatBytes(f.size).padStart(10)}  ${
          String(f.parts).padStart(6)
        }  ${
          displayWidth(owner) > MAX_OWNER_COLUMNS
            ? truncateColumns(owner, MAX_OWNER_COLUMNS - 3) + "..."
            : owner
        }`,
      );
    }
  };
  out.line(`${"NAME".padEnd(width)}  ${"SIZE".padStart(10)}  ${"PARTS".padStart(6)}  OWNER`);
  rows(first);
  // Each page goes out whole before the next is awaited: the reader sees
  // the list as it comes, not once a block of output fills.
  out.flush();
  if (next?.done) return;
  while (!out.closed) {
    next = await pages.next();
    if (next.done) return;
    rows(next.value);
    out.flush();
  }
}
