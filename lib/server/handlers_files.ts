/**
 * Handlers of the file ops: one file's entry, with the address of every
 * instance holding one of its parts, and the list of files. Both read the
 * manifest through the instance's manifest store.
 */
import { type FileEntry } from "../state/manifest.ts";
import { allEntries, walkWhole } from "../state/manifest_store.ts";
import { ProtocolError } from "../wire/errors.ts";
import { encodeFrame, jsonBody, writeAll } from "../wire/frame.ts";
import { type HandlerFamily, type Instance } from "./handler.ts";

/** Manifest entries parsed at a time while answering file.list. */
const LIST_PAGE_ENTRIES_SERVED = 100;

export const FILE_HANDLERS: HandlerFamily<"file.get" | "file.list"> = {
  "file.get": async (instance, { request, conn }) => {
    const { manifest } = instance;
    const found = await manifest.get(request.name);
    if (!found) {
      throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(request.name)}`);
    }
    const { entry, revision } = found;
    const body = jsonBody({ entry, instances: _addresses(instance, entry) });
    await writeAll(
      conn,
      encodeFrame({ op: "file", name: entry.name, generation: revision }, body),
    );
  },
  "file.list": async (instance, { conn }) => {
    const { manifest } = instance;
    // Summaries as JSON text, page by page: a busy instance holds no more
    // than one page of parsed entries at a time.
    let generation = await manifest.revision();
    const files = await walkWhole(async () => {
      const files: string[] = [];
      for await (const { entry: f, revision } of allEntries(manifest, LIST_PAGE_ENTRIES_SERVED)) {
        generation = Math.max(generation, revision);
        files.push(JSON.stringify({
          name: f.name,
          size: f.size,
          parts: f.parts.length,
          owner: f.owner,
          created: f.created,
        }));
      }
      return files;
    });
    const body = new TextEncoder().encode(`[${files.join(",")}]`);
    await writeAll(conn, encodeFrame({ op: "files", generation }, body));
  },
};

/** Instance id to address, for every instance holding a part of the file. */
function _addresses(instance: Instance, entry: FileEntry): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of entry.parts) {
    for (const id of part.replicas) out[id] ??= instance.addressOf(id);
  }
  return out;
}
