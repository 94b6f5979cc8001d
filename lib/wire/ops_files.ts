/**
 * File ops: one file's entry (with the addresses of the instances holding its
 * parts), the entries of several files at once, and the list of files. The entry travels as JSON and is checked into
 * a domain FileEntry by the client (lib/state/manifest.ts parseFileEntry).
 * PROTOCOL.md "Messages: files" describes each message and its fields.
 */
import { ProtocolError } from "./errors.ts";
import { addressMap, boolField, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";

export type FileGetRequest = { op: "file.get"; name: string };
export type FileReply = { op: "file"; name: string; generation: number };
/** `entry` is checked by the client into a FileEntry; `instances` maps id to "host:port". */
export type FileReplyBody = { entry: unknown; instances: Record<string, string> };
/** Names one file.lookup may ask for: at most 255 bytes each, they fit a header (64 KiB). */
export const MAX_LOOKUP_NAMES = 100;
/**
 * A file.lookup reply holds entries until its body reaches this many bytes,
 * then stops (always after at least one): the client asks again for the rest.
 */
export const LOOKUP_REPLY_BUDGET_BYTES = 4 * 1024 * 1024;
export type FileLookupRequest = { op: "file.lookup"; names: string[] };
export type FoundReply = { op: "found"; generation: number };
/**
 * `entries[i]` answers `names[i]`: the entry (checked by the client into a
 * FileEntry), or null when no file has that name; the list may stop short
 * of the names (LOOKUP_REPLY_BUDGET_BYTES). `instances` maps the ids of
 * every entry's replicas to "host:port".
 */
export type FoundReplyBody = { entries: unknown[]; instances: Record<string, string> };
/**
 * Without `limit`, every file in one reply (the first form of the op);
 * with it, one page of at most `limit` files in name order after `after`,
 * read at `generation` where the store keeps history.
 */
export type FileListRequest = {
  op: "file.list";
  after?: string;
  limit?: number;
  generation?: number;
};
export type FilesReply = { op: "files"; generation: number; more?: boolean };
/** Files one file.list page may ask for. */
export const MAX_LIST_PAGE_FILES = 1000;
/** One row of the file list. */
export type FileSummary = {
  name: string;
  size: number;
  parts: number;
  owner: string;
  created: string;
};

export const FILE_OPS = opFamily({
  "file.get": defineOp<FileGetRequest, FileReply, FileReplyBody>({
    parseRequest: (header) => ({ op: "file.get", name: stringField(header, "name") }),
    requestBody: false,
    replyOp: "file",
    parseReply: (header) => ({
      op: "file",
      name: stringField(header, "name", "BAD_FRAME"),
      generation: uintField(header, "generation", "BAD_FRAME"),
    }),
    replyBody: (value) => {
      const body = value as { entry?: unknown; instances?: unknown } | null;
      return { entry: body?.entry, instances: addressMap(body?.instances) };
    },
  }),
  "file.lookup": defineOp<FileLookupRequest, FoundReply, FoundReplyBody>({
    parseRequest: (header) => {
      const names = header.names;
      if (
        !Array.isArray(names) || names.length < 1 || names.length > MAX_LOOKUP_NAMES ||
        !names.every((name) => typeof name === "string")
      ) {
        throw new ProtocolError(
          "BAD_REQUEST",
          `Field "names" of file.lookup must be a list of 1..${MAX_LOOKUP_NAMES} strings`,
        );
      }
      return { op: "file.lookup", names: names as string[] };
    },
    requestBody: false,
    replyOp: "found",
    parseReply: (header) => ({
      op: "found",
      generation: uintField(header, "generation", "BAD_FRAME"),
    }),
    replyBody: (value) => {
      const body = value as { entries?: unknown; instances?: unknown } | null;
      if (!Array.isArray(body?.entries)) {
        throw new ProtocolError("BAD_FRAME", "file.lookup entries are not a list");
      }
      return { entries: body.entries, instances: addressMap(body.instances) };
    },
  }),
  "file.list": defineOp<FileListRequest, FilesReply, FileSummary[]>({
    parseRequest: (header) => {
      const request: FileListRequest = { op: "file.list" };
      if (header.limit !== undefined) {
        const limit = uintField(header, "limit");
        if (limit < 1 || limit > MAX_LIST_PAGE_FILES) {
          throw new ProtocolError(
            "BAD_REQUEST",
            `Field "limit" of file.list must be 1..${MAX_LIST_PAGE_FILES}, got ${limit}`,
          );
        }
        request.limit = limit;
      }
      if (header.after !== undefined) request.after = stringField(header, "after");
      if (header.generation !== undefined) request.generation = uintField(header, "generation");
      return request;
    },
    requestBody: false,
    replyOp: "files",
    parseReply: (header) => ({
      op: "files",
      generation: uintField(header, "generation", "BAD_FRAME"),
      ...(header.more !== undefined ? { more: boolField(header, "more", "BAD_FRAME") } : {}),
    }),
    replyBody: (value) => {
      if (!Array.isArray(value)) throw new ProtocolError("BAD_FRAME", "file list is not a list");
      // Printed and sorted by ls: each field must be what it claims to be.
      for (const [index, item] of value.entries()) {
        const f = item as Record<string, unknown> | null;
        if (
          typeof f !== "object" || f === null || typeof f.name !== "string" ||
          typeof f.owner !== "string" || typeof f.created !== "string" ||
          !Number.isSafeInteger(f.size) || !Number.isSafeInteger(f.parts)
        ) {
          throw new ProtocolError("BAD_FRAME", `file list item ${index} is malformed`);
        }
      }
      return value as FileSummary[];
    },
  }),
});
