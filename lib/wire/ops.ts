/**
 * The one table of ops. Each request op appears once, in its family's file
 * (control, files, parts, signed mutations, repair), with its request parser,
 * whether its request may carry a body, its reply op and the check of that
 * reply. From the table come:
 *
 * 1. the request and reply types (Request, RequestOf<"part.get">, ReplyOf<...>);
 * 2. parseRequest(), which the server runs on every frame (UNKNOWN_OP for an
 *    op not in the table);
 * 3. takesBody(), the server's check that only ops with a body send one;
 * 4. parseReply() and parseReplyBody(), which the client runs on every answer;
 * 5. the server's handler table (lib/server/handlers.ts), which must name
 *    every op here, or the type check fails.
 *
 * Wire types stay in lib/wire and at the edges (lib/client/peer.ts,
 * lib/server/); the rest of the code works with domain types.
 */
import { ProtocolError } from "./errors.ts";
import { type Header } from "./frame.ts";
import { CONTROL_OPS } from "./ops_control.ts";
import { FILE_OPS } from "./ops_files.ts";
import { PART_OPS } from "./ops_parts.ts";
import { REPAIR_OPS } from "./ops_repair.ts";
import { SIGNED_OPS } from "./ops_signed.ts";

/** Longest piece of an unknown op echoed back in an error message. */
const MAX_ECHOED_OP_CHARS = 64;

export const OPS = {
  ...CONTROL_OPS,
  ...FILE_OPS,
  ...PART_OPS,
  ...SIGNED_OPS,
  ...REPAIR_OPS,
};

type _Ops = typeof OPS;
/** Every op a client may send. */
export type RequestOp = keyof _Ops;
export type RequestOf<K extends RequestOp> = ReturnType<_Ops[K]["parseRequest"]>;
/** Any request a client may send, discriminated by `op`. */
export type Request = { [K in RequestOp]: RequestOf<K> }[RequestOp];
/** The header of the reply to a request of op K that succeeded. */
export type ReplyOf<K extends RequestOp> = ReturnType<_Ops[K]["parseReply"]>;
/** The checked JSON body of the reply to op K (never when it has none, or raw bytes). */
export type ReplyBodyOf<K extends RequestOp> = ReturnType<
  Extract<_Ops[K]["replyBody"], (value: unknown) => unknown>
>;

/** True for a string that names an op in the table. */
export function isRequestOp(op: string): op is RequestOp {
  return Object.hasOwn(OPS, op);
}

/** Checks a decoded header against its op's entry: UNKNOWN_OP, or BAD_REQUEST naming the field. */
export function parseRequest(header: Header): Request {
  if (!isRequestOp(header.op)) {
    throw new ProtocolError(
      "UNKNOWN_OP",
      `Unknown op "${header.op.slice(0, MAX_ECHOED_OP_CHARS)}"`,
    );
  }
  return OPS[header.op].parseRequest(header);
}

/** Whether a request of this op may carry a body (a part's bytes, a part list). */
export function takesBody(op: RequestOp): boolean {
  return OPS[op].requestBody;
}

/**
 * Checks the header of a reply (not an error frame) to a request of op `op`:
 * BAD_FRAME when its op is not the one the table gives, or a field is bad.
 */
export function parseReply<K extends RequestOp>(op: K, header: Header): ReplyOf<K> {
  const spec: _Ops[RequestOp] = OPS[op];
  if (header.op !== spec.replyOp) {
    throw new ProtocolError(
      "BAD_FRAME",
      `${op} was answered with ${header.op.slice(0, MAX_ECHOED_OP_CHARS)}, not ${spec.replyOp}`,
    );
  }
  return spec.parseReply(header) as ReplyOf<K>;
}

/** Checks the JSON body of a reply to op `op`, for the ops whose reply has one. */
export function parseReplyBody<K extends RequestOp>(op: K, value: unknown): ReplyBodyOf<K> {
  const read: _Ops[RequestOp]["replyBody"] = OPS[op].replyBody;
  if (typeof read !== "function") {
    throw new TypeError(`The reply to ${op} has no JSON body (it is "${read}")`);
  }
  return read(value) as ReplyBodyOf<K>;
}
