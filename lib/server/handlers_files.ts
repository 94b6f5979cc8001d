/**
 * Handlers of the file ops: one file's entry, with the address of every
 * instance holding one of its parts, and the list of files. Both read the
 * manifest through the instance's cache.
 */
import { type FileEntry } from "../state/manifest.ts";
import { ProtocolError } from "../wire/errors.ts";
import { encodeFrame, jsonBody, writeAll } from "../wire/frame.ts";
import { type HandlerFamily, type Instance } from "./handler.ts";

export const FILE_HANDLERS: HandlerFamily<"file.get" | "file.list"> = {
  "file.get": async (instance, { request, conn }) => {
    const { manifest } = instance;
    const current = await manifest.get();
    const entry = Object.hasOwn(current.files, request.name)
      ? current.files[request.name]
      : undefined;
    if (!entry) {
      throw new ProtocolError("NOT_FOUND", `No file named ${JSON.stringify(request.name)}`);
    }
    const body = jsonBody({ entry, instances: _addresses(instance, entry) });
    await writeAll(
      conn,
      encodeFrame({ op: "file", name: entry.name, generation: current.generation }, body),
    );
  },
  "file.list": async (instance, { conn }) => {
    const { manifest } = instance;
    const current = await manifest.get();
    const files = Object.values(current.files).map((f) => ({
      name: f.name,
      size: f.size,
      parts: f.parts.length,
      owner: f.owner,
      created: f.created,
    }));
    await writeAll(
      conn,
      encodeFrame({ op: "files", generation: current.generation }, jsonBody(files)),
    );
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
