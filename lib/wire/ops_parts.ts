/**
 * Part ops: read a byte range of a stored part, store a part, ask whether an
 * instance holds one, and report a copy that failed its digest. Part data
 * travels as raw frame bodies, never as JSON.
 * PROTOCOL.md "Messages: parts" describes each message and its fields.
 */
import { boolField, digestField, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";
import { type KeyAuth, keyAuthField } from "./ops_signed.ts";

export type PartGetRequest = { op: "part.get"; digest: string; offset: number; length: number };
/** Followed by exactly `length` body bytes: the range asked for. */
export type DataReply = { op: "data"; digest: string; offset: number; length: number };
/**
 * The part's bytes follow as the body; the instance checks them against
 * `digest`. Signed by the uploader (lib/auth/part_put_signature.ts): `cluster` is the
 * cluster's id, and the signature covers it, the digest and the body's size.
 */
export type PartPutRequest = {
  op: "part.put";
  digest: string;
  /** Absent only on an unsigned part.put, which the instance refuses with UNAUTHORIZED. */
  cluster?: string;
  auth?: KeyAuth;
};
/** `stored` is false when the instance already held the part (the body was skipped). */
export type PartStoredReply = { op: "ok"; stored: boolean };
export type PartReportRequest = { op: "part.report"; digest: string };
/** `quarantined` is true when the instance's copy failed again and is now set aside. */
export type PartReportedReply = { op: "ok"; quarantined: boolean };
/**
 * Signed (like part.put, without the size) when the asker means to use the
 * copy: only then does the instance mark it as in use.
 */
export type PartHasRequest = { op: "part.has"; digest: string; cluster?: string; auth?: KeyAuth };
/** `size` is present only when the part is stored (an undefined one is left out of the JSON). */
export type HasReply = { op: "has"; digest: string; stored: boolean; size?: number | undefined };

export const PART_OPS = opFamily({
  "part.get": defineOp<PartGetRequest, DataReply>({
    parseRequest: (header) => ({
      op: "part.get",
      digest: digestField(header),
      offset: uintField(header, "offset"),
      length: uintField(header, "length"),
    }),
    requestBody: false,
    replyOp: "data",
    parseReply: (header) => ({
      op: "data",
      digest: digestField(header, "digest", "BAD_FRAME"),
      offset: uintField(header, "offset", "BAD_FRAME"),
      length: uintField(header, "length", "BAD_FRAME"),
    }),
    replyBody: "bytes",
  }),
  "part.put": defineOp<PartPutRequest, PartStoredReply>({
    parseRequest: (header) => ({
      op: "part.put",
      digest: digestField(header),
      ...(header.cluster === undefined ? {} : { cluster: stringField(header, "cluster") }),
      ...(header.auth === undefined ? {} : { auth: keyAuthField(header) }),
    }),
    requestBody: true,
    replyOp: "ok",
    parseReply: (header) => ({ op: "ok", stored: boolField(header, "stored", "BAD_FRAME") }),
    replyBody: "none",
  }),
  "part.report": defineOp<PartReportRequest, PartReportedReply>({
    parseRequest: (header) => ({ op: "part.report", digest: digestField(header) }),
    requestBody: false,
    replyOp: "ok",
    parseReply: (header) => ({
      op: "ok",
      quarantined: boolField(header, "quarantined", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
  "part.has": defineOp<PartHasRequest, HasReply>({
    parseRequest: (header) => ({
      op: "part.has",
      digest: digestField(header),
      ...(header.cluster === undefined ? {} : { cluster: stringField(header, "cluster") }),
      ...(header.auth === undefined ? {} : { auth: keyAuthField(header) }),
    }),
    requestBody: false,
    replyOp: "has",
    parseReply: (header) => ({
      op: "has",
      digest: digestField(header, "digest", "BAD_FRAME"),
      stored: boolField(header, "stored", "BAD_FRAME"),
      ...(header.size === undefined ? {} : { size: uintField(header, "size", "BAD_FRAME") }),
    }),
    replyBody: "none",
  }),
});
