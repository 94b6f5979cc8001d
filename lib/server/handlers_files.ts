/**
 * Handlers of the file ops: one file's entry, with the address of every
 * instance holding one of its parts, the entries of several files at once,
 * and the list of files. Both read the
 * manifest through the instance's manifest store.
 */
import { type FileEntry } from "../state/manifest.ts";
import { allSummaries, type ManifestStore, walkWhole } from "../state/manifest_store.ts";
import { ProtocolError } from "../wire/errors.ts";
import { LOOKUP_REPLY_BUDGET_BYTES } from "../wire/ops_files.ts";
import { encodeFrame, jsonBody, writeAll } from "../wire/frame.ts";
import { type HandlerFamily, type Instance } from "./handler.ts";

const _encoder = new TextEncoder();
const _OPEN_BRACKET = 0x5b;
const _CLOSE_BRACKET = 0x5d;

/** Entries a file.lookup reads from the manifest store at once. */
const LOOKUP_READS_AT_ONCE = 16;

/** Manifest entries parsed at a time while answering file.list. */
const LIST_PAGE_ENTRIES_SERVED = 100;

/**
 * Files one file.list page holds at most, whatever the client asked for: the
 * page's parsed entries and its reply are garbage the instance's heap grows
 * by and does not give back. At 10,000 files, five whole lists in pages of
 * 1,000 left an instance 8 MB larger; in pages of 250, under 1 MB.
 */
export const MAX_SERVED_LIST_PAGE = 250;

export const FILE_HANDLERS: HandlerFamily<"file.get" | "file.lookup" | "file.list"> = {
  "file.get": async (instance, { request, reply }) => {
    const { manifest } = instance;
    const found = await manifest.get(request.name);
    if (!found) {
      throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(request.name)}`);
    }
    const { entry, revision } = found;
    const body = jsonBody({ entry, instances: _addresses(instance, entry) });
    await reply({ op: "file", name: entry.name, generation: revision }, body);
  },
  "file.lookup": async (instance, { request, reply }) => {
    // The entries are read LOOKUP_READS_AT_ONCE at a time (one pass over
    // the store's files, or one etcd transaction, each) and the body is
    // built as text, so that it stops at the budget holding no more parsed
    // entries than those.
    const entries: string[] = [];
    const instances: Record<string, string> = {};
    let generation = 0;
    let bytes = 0;
    for (let at = 0; at < request.names.length; at += LOOKUP_READS_AT_ONCE) {
      if (entries.length > 0 && bytes >= LOOKUP_REPLY_BUDGET_BYTES) break;
      const names = request.names.slice(at, at + LOOKUP_READS_AT_ONCE);
      for (const found of await instance.manifest.getMany(names)) {
        if (entries.length > 0 && bytes >= LOOKUP_REPLY_BUDGET_BYTES) break;
        if (!found) {
          entries.push("null");
          continue;
        }
        generation = Math.max(generation, found.revision);
        Object.assign(instances, _addresses(instance, found.entry));
        const json = JSON.stringify(found.entry);
        entries.push(json);
        bytes += json.length;
      }
    }
    const body = _encoder.encode(
      `{"entries":[${entries.join(",")}],"instances":${JSON.stringify(instances)}}`,
    );
    await reply({ op: "found", generation }, body);
  },
  "file.list": async (instance, { request, conn, reply }) => {
    if (request.limit === undefined) {
      await writeAll(conn, await _listFrame(instance.manifest));
      return;
    }
    // One page: memory bounded by the page, however many files the cluster holds.
    const page = await instance.manifest.summaries({
      limit: Math.min(request.limit, MAX_SERVED_LIST_PAGE),
      ...(request.after !== undefined ? { after: request.after } : {}),
      ...(request.generation !== undefined ? { atRevision: request.generation } : {}),
    });
    await reply(
      { op: "files", generation: page.revision, more: page.more },
      jsonBody(page.summaries),
    );
  },
};

/** The file.list reply built last for each store, with the revision it was built at. */
const _lists = new WeakMap<ManifestStore, { revision: number; frame: Promise<_ListFrame> }>();

interface _ListFrame {
  /** The highest revision a page of it was read at. */
  generation: number;
  bytes: Uint8Array;
}

/**
 * The whole file.list reply frame at the store's current revision: built once
 * per revision and re-sent while the revision holds (concurrent lists share
 * one build), since building it parses every entry and that garbage is memory
 * the instance does not give back.
 */
async function _listFrame(manifest: ManifestStore): Promise<Uint8Array> {
  const revision = await manifest.revision();
  const kept = _lists.get(manifest);
  if (kept?.revision === revision) return (await kept.frame).bytes;
  const frame = _buildListFrame(manifest, revision);
  _lists.set(manifest, { revision, frame });
  try {
    const { generation, bytes } = await frame;
    // Pages read at a later revision are not the list at `revision`: keep it for no one.
    if (generation !== revision) _forget(manifest, frame);
    return bytes;
  } catch (error) {
    _forget(manifest, frame);
    throw error;
  }
}

async function _buildListFrame(manifest: ManifestStore, revision: number): Promise<_ListFrame> {
  // Summaries as JSON text, encoded page by page: no more than one page of
  // parsed entries, nor of their JSON as strings, is held at a time (holding
  // every summary's string until the end cost the instance ~3 MB more at
  // 10,000 files).
  let generation = revision;
  // The pages of one walk are of one revision: a walk the manifest changed
  // under starts over.
  const chunks = await walkWhole(async () => {
    const chunks: Uint8Array[] = [];
    let page: string[] = [];
    const flush = () => {
      chunks.push(_encoder.encode((chunks.length > 0 ? "," : "") + page.join(",")));
      page = [];
    };
    for await (
      const { summary, revision: read } of allSummaries(manifest, LIST_PAGE_ENTRIES_SERVED)
    ) {
      generation = Math.max(generation, read);
      page.push(JSON.stringify(summary));
      if (page.length === LIST_PAGE_ENTRIES_SERVED) flush();
    }
    if (page.length > 0) flush();
    return chunks;
  });
  const body = new Uint8Array(2 + chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  body[0] = _OPEN_BRACKET;
  let at = 1;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  body[at] = _CLOSE_BRACKET;
  return { generation, bytes: encodeFrame({ op: "files", generation }, body) };
}

function _forget(manifest: ManifestStore, frame: Promise<unknown>): void {
  if (_lists.get(manifest)?.frame === frame) _lists.delete(manifest);
}

/** Instance id to address, for every instance holding a part of the file. */
function _addresses(instance: Instance, entry: FileEntry): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of entry.parts) {
    for (const id of part.replicas) out[id] ??= instance.addressOf(id);
  }
  return out;
}
