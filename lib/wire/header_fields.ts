/**
 * Typed reads of a header's fields, for the op table's request parsers and
 * reply checks. A missing or mistyped field is a protocol error that names
 * the field and the op: BAD_REQUEST when a client sent it, BAD_FRAME when an
 * instance answered with it.
 */
import { DIGEST_PATTERN } from "../hash/digest_patterns.ts";
import { ProtocolError } from "./errors.ts";
import { type Header } from "./frame.ts";

/** The code of a bad field: BAD_REQUEST in a request, BAD_FRAME in a reply. */
export type FieldErrorCode = "BAD_REQUEST" | "BAD_FRAME";

export function stringField(
  header: Header,
  field: string,
  code: FieldErrorCode = "BAD_REQUEST",
): string {
  const value = header[field];
  if (typeof value !== "string") {
    throw new ProtocolError(code, `Field "${field}" of ${header.op} must be a string`);
  }
  return value;
}

export function uintField(
  header: Header,
  field: string,
  code: FieldErrorCode = "BAD_REQUEST",
): number {
  const value = header[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(
      code,
      `Field "${field}" of ${header.op} must be a non-negative integer`,
    );
  }
  return value;
}

export function boolField(
  header: Header,
  field: string,
  code: FieldErrorCode = "BAD_REQUEST",
): boolean {
  const value = header[field];
  if (typeof value !== "boolean") {
    throw new ProtocolError(code, `Field "${field}" of ${header.op} must be a boolean`);
  }
  return value;
}

/** A SHA-256 digest field: checked before it can name a file in a part store. */
export function digestField(
  header: Header,
  field = "digest",
  code: FieldErrorCode = "BAD_REQUEST",
): string {
  const digest = stringField(header, field, code);
  if (!DIGEST_PATTERN.test(digest)) {
    throw new ProtocolError(code, `Field "${field}" of ${header.op} is not a SHA-256 hex`);
  }
  return digest;
}

/** Instance id to "host:port", from a JSON body; entries that are not strings are dropped. */
export function addressMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof value === "object" && value !== null) {
    for (const [id, address] of Object.entries(value)) {
      if (typeof address === "string") out[id] = address;
    }
  }
  return out;
}
