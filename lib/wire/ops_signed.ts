/**
 * Signed mutations: publish, delete and rename a file. Each request carries an
 * `auth` proof (lib/auth/signed_request.ts says what is signed); a publish
 * carries its part list as a JSON body whose SHA-256 the signature covers.
 * PROTOCOL.md "Messages: signed mutations" describes each message and its fields.
 */
import { ProtocolError } from "./errors.ts";
import { type Header } from "./frame.ts";
import { boolField, digestField, stringField, uintField } from "./header_fields.ts";
import { defineOp, opFamily } from "./op_spec.ts";

/** Largest part list a file.publish body may carry (about 500 000 parts). */
export const MAX_PUBLISH_BODY_BYTES = 64 * 1024 * 1024;
/** Longest key, nonce or signature string a signed request may carry. */
const MAX_AUTH_FIELD_CHARS = 128;

/**
 * The proof a signed request carries: the signer's public key (its owner
 * string), when it was signed, a one-time nonce, and the Ed25519 signature over
 * the canonical encoding described in signed_request.ts and PROTOCOL.md.
 */
export type SignedAuth = {
  key: string;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  nonce: string;
  signature: string;
};

export type FilePublishRequest = {
  op: "file.publish";
  /** The cluster it is signed for (cluster.info's clusterId): no other cluster accepts it. */
  cluster: string;
  name: string;
  replace: boolean;
  size: number;
  partSize: number;
  /** SHA-256 of the body (the part list), so the signature covers it. */
  bodyDigest: string;
  auth: SignedAuth;
};
/** `unchanged` when the same upload was already published (a retry whose reply was lost). */
export type PublishedReply = {
  op: "published";
  name: string;
  contentId: string;
  generation: number;
  unchanged: boolean;
  /** How many parts the replaced file held that no file uses any more. */
  partsFreed: number;
};
/**
 * `contentId` is that of the entry the signer means to change (file.get's):
 * once the name holds other content, the request is refused.
 */
export type FileDeleteRequest = {
  op: "file.delete";
  cluster: string;
  name: string;
  contentId: string;
  auth: SignedAuth;
};
export type DeletedReply = {
  op: "deleted";
  name: string;
  generation: number;
  /** Parts no other file uses, freed, and their stored copies deleted. */
  partsFreed: number;
  copiesFreed: number;
};
export type FileRenameRequest = {
  op: "file.rename";
  cluster: string;
  name: string;
  contentId: string;
  to: string;
  auth: SignedAuth;
};
export type RenamedReply = { op: "renamed"; name: string; to: string; generation: number };

function _auth(header: Header): SignedAuth {
  const { nonce, ...rest } = _authObject(header, ["key", "nonce", "signature"]);
  return { ...rest, nonce: nonce as string };
}

/**
 * The proof a part.put carries: a SignedAuth without the nonce, since a
 * replayed part.put stores the same bytes under the same digest again.
 */
export type KeyAuth = Omit<SignedAuth, "nonce">;

/** Reads a part.put's "auth" field. */
export function keyAuthField(header: Header): KeyAuth {
  const { key, timestamp, signature } = _authObject(header, ["key", "signature"]);
  return { key, timestamp, signature };
}

function _authObject(
  header: Header,
  strings: readonly string[],
): { key: string; timestamp: number; signature: string; nonce?: string } {
  const value = header.auth as Record<string, unknown> | null | undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("BAD_REQUEST", `${header.op} must carry an "auth" object`);
  }
  for (const field of strings) {
    const text = value[field];
    if (typeof text !== "string" || text.length === 0 || text.length > MAX_AUTH_FIELD_CHARS) {
      throw new ProtocolError(
        "BAD_REQUEST",
        `Field "auth.${field}" of ${header.op} must be a string of 1..${MAX_AUTH_FIELD_CHARS} characters`,
      );
    }
  }
  const { timestamp } = value;
  if (typeof timestamp !== "number" || !Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new ProtocolError(
      "BAD_REQUEST",
      `Field "auth.timestamp" of ${header.op} must be milliseconds since the epoch`,
    );
  }
  return {
    key: value.key as string,
    timestamp,
    signature: value.signature as string,
    ...(typeof value.nonce === "string" ? { nonce: value.nonce } : {}),
  };
}

export const SIGNED_OPS = opFamily({
  "file.publish": defineOp<FilePublishRequest, PublishedReply>({
    parseRequest: (header) => ({
      op: "file.publish",
      cluster: stringField(header, "cluster"),
      name: stringField(header, "name"),
      replace: boolField(header, "replace"),
      size: uintField(header, "size"),
      partSize: uintField(header, "partSize"),
      bodyDigest: digestField(header, "bodyDigest"),
      auth: _auth(header),
    }),
    requestBody: true,
    replyOp: "published",
    parseReply: (header) => ({
      op: "published",
      name: stringField(header, "name", "BAD_FRAME"),
      contentId: stringField(header, "contentId", "BAD_FRAME"),
      generation: uintField(header, "generation", "BAD_FRAME"),
      unchanged: boolField(header, "unchanged", "BAD_FRAME"),
      partsFreed: uintField(header, "partsFreed", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
  "file.delete": defineOp<FileDeleteRequest, DeletedReply>({
    parseRequest: (header) => ({
      op: "file.delete",
      cluster: stringField(header, "cluster"),
      name: stringField(header, "name"),
      contentId: digestField(header, "contentId"),
      auth: _auth(header),
    }),
    requestBody: false,
    replyOp: "deleted",
    parseReply: (header) => ({
      op: "deleted",
      name: stringField(header, "name", "BAD_FRAME"),
      generation: uintField(header, "generation", "BAD_FRAME"),
      partsFreed: uintField(header, "partsFreed", "BAD_FRAME"),
      copiesFreed: uintField(header, "copiesFreed", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
  "file.rename": defineOp<FileRenameRequest, RenamedReply>({
    parseRequest: (header) => ({
      op: "file.rename",
      cluster: stringField(header, "cluster"),
      name: stringField(header, "name"),
      contentId: digestField(header, "contentId"),
      to: stringField(header, "to"),
      auth: _auth(header),
    }),
    requestBody: false,
    replyOp: "renamed",
    parseReply: (header) => ({
      op: "renamed",
      name: stringField(header, "name", "BAD_FRAME"),
      to: stringField(header, "to", "BAD_FRAME"),
      generation: uintField(header, "generation", "BAD_FRAME"),
    }),
    replyBody: "none",
  }),
});
