/**
 * Repair ops: what an instance stores (and has quarantined), and re-hashing
 * one stored copy. `fts repair` and heal use them to find and mend lost or
 * damaged copies.
 * PROTOCOL.md "Messages: repair" describes each message and its fields.
 */
import { DIGEST_PATTERN } from "../hash/digest_patterns.ts";
import { ProtocolError } from "./errors.ts";
import { digestField, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";

/** What part.verify found: "corrupt" means the copy failed and is now quarantined. */
export const VERIFY_STATUSES = ["ok", "missing", "quarantined", "corrupt"] as const;
export type VerifyStatus = typeof VERIFY_STATUSES[number];

export type PartListRequest = { op: "part.list" };
export type PartsReply = { op: "parts"; count: number };
/** Stored parts as [digest, size in bytes] pairs, and the digests set aside as damaged. */
export type PartsReplyBody = { parts: [string, number][]; quarantined: string[] };
export type PartVerifyRequest = { op: "part.verify"; digest: string };
export type VerifiedReply = { op: "verified"; digest: string; status: VerifyStatus };

function _partList(value: unknown): PartsReplyBody {
  const body = value as { parts?: unknown; quarantined?: unknown } | null;
  if (!Array.isArray(body?.parts) || !Array.isArray(body.quarantined)) {
    throw new ProtocolError("BAD_FRAME", "part list is malformed");
  }
  // A bad item is skipped, not fatal: the rest of the list is still worth having.
  const parts: [string, number][] = [];
  for (const item of body.parts) {
    const [digest, size] = Array.isArray(item) ? item : [];
    if (typeof digest === "string" && DIGEST_PATTERN.test(digest) && Number.isSafeInteger(size)) {
      parts.push([digest, size as number]);
    }
  }
  const quarantined = body.quarantined.filter((digest): digest is string =>
    typeof digest === "string" && DIGEST_PATTERN.test(digest)
  );
  return { parts, quarantined };
}

export const REPAIR_OPS = opFamily({
  "part.list": defineOp<PartListRequest, PartsReply, PartsReplyBody>({
    parseRequest: () => ({ op: "part.list" }),
    requestBody: false,
    replyOp: "parts",
    parseReply: (header) => ({ op: "parts", count: uintField(header, "count", "BAD_FRAME") }),
    replyBody: _partList,
  }),
  "part.verify": defineOp<PartVerifyRequest, VerifiedReply>({
    parseRequest: (header) => ({ op: "part.verify", digest: digestField(header) }),
    requestBody: false,
    replyOp: "verified",
    parseReply: (header) => {
      const status = stringField(header, "status", "BAD_FRAME");
      if (!(VERIFY_STATUSES as readonly string[]).includes(status)) {
        throw new ProtocolError("BAD_FRAME", `Unknown part.verify status "${status.slice(0, 64)}"`);
      }
      return {
        op: "verified",
        digest: digestField(header, "digest", "BAD_FRAME"),
        status: status as VerifyStatus,
      };
    },
    replyBody: "none",
  }),
});
