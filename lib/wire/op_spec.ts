/**
 * What the op table (ops.ts) says about one op: how to read its request, whether
 * the request may carry a body, which reply answers it and how to check that
 * reply. The request and reply types are derived from these entries, so a new
 * op is one entry in one family file, and the server's handler table must grow
 * with it (its exhaustive check fails otherwise).
 */
import { type Header } from "./frame.ts";

/** How a reply's body is read: none, raw bytes (a part's data), or JSON checked by a function. */
export type ReplyBody<B> = "none" | "bytes" | ((value: unknown) => B);

export interface OpSpec<Q extends Header, R extends Header, B = never> {
  /** Reads the request's fields from its header; BAD_REQUEST on a missing or bad one. */
  readonly parseRequest: (header: Header) => Q;
  /** Whether a request frame may carry a body; any other request with a body is refused. */
  readonly requestBody: boolean;
  /** The op of the reply to a request that succeeded. */
  readonly replyOp: R["op"];
  /** Checks a reply header whose op is replyOp; BAD_FRAME on a missing or bad field. */
  readonly parseReply: (header: Header) => R;
  readonly replyBody: ReplyBody<B>;
}

/** One entry of the table, with its types spelled out once. */
export function defineOp<Q extends Header, R extends Header, B = never>(
  spec: OpSpec<Q, R, B>,
): OpSpec<Q, R, B> {
  return spec;
}

/**
 * A family of ops (files, parts, ...), checked: each key is the op its
 * request parser returns, so the table cannot file an op under another name.
 */
export function opFamily<
  T extends { [K in keyof T]: OpSpec<{ op: K & string } & Header, Header, unknown> },
>(ops: T): T {
  return ops;
}
