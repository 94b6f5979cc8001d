/**
 * File ops: one file's entry (with the addresses of the instances holding its
 * parts) and the list of files. The entry travels as JSON and is checked into
 * a domain FileEntry by the client (lib/state/manifest.ts parseFileEntry).
 * PROTOCOL.md "Messages: files" describes each message and its fields.
 */
import { ProtocolError } from "./errors.ts";
import { addressMap, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";

export type FileGetRequest = { op: "file.get"; name: string };
export type FileReply = { op: "file"; name: string; generation: number };
/** `entry` is checked by the client into a FileEntry; `instances` maps id to "host:port". */
export type FileReplyBody = { entry: unknown; instances: Record<string, string> };
export type FileListRequest = { op: "file.list" };
export type FilesReply = { op: "files"; generation: number };
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
  "file.list": defineOp<FileListRequest, FilesReply, FileSummary[]>({
    parseRequest: () => ({ op: "file.list" }),
    requestBody: false,
    replyOp: "files",
    parseReply: (header) => ({
      op: "files",
      generation: uintField(header, "generation", "BAD_FRAME"),
    }),
    replyBody: (value) => {
      if (!Array.isArray(value)) throw new ProtocolError("BAD_FRAME", "file list is not a list");
      return value as FileSummary[];
    },
  }),
});
