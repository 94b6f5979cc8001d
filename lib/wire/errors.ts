/**
 * The one catalogue of error codes that cross the wire. Each code has a stable
 * name; nothing else invents errors on the wire. PROTOCOL.md lists the same table.
 */
export const ERROR_CODES = {
  /** The frame could not be parsed: bad lengths, bad JSON, missing fields. */
  BAD_FRAME: "BAD_FRAME",
  /** The header is longer than MAX_HEADER_BYTES. */
  HEADER_TOO_LARGE: "HEADER_TOO_LARGE",
  /** The declared body is longer than MAX_BODY_BYTES (or the op's own limit). */
  BODY_TOO_LARGE: "BODY_TOO_LARGE",
  /** The op is not one this server knows. */
  UNKNOWN_OP: "UNKNOWN_OP",
  /** The request is well framed but a field is missing or has a bad value. */
  BAD_REQUEST: "BAD_REQUEST",
  /** The first frame was not a hello, or the versions do not overlap. */
  VERSION_MISMATCH: "VERSION_MISMATCH",
  /** The named file or part does not exist here. */
  NOT_FOUND: "NOT_FOUND",
  /** The requested byte range lies outside the part. */
  BAD_RANGE: "BAD_RANGE",
  /** Received bytes do not hash to the digest the request named. */
  DIGEST_MISMATCH: "DIGEST_MISMATCH",
  /** The part is quarantined here because its stored copy failed its digest. */
  QUARANTINED: "QUARANTINED",
  /** Too many connections; try another instance or later. */
  BUSY: "BUSY",
  /** The peer was too slow: idle or request timeout. */
  TIMEOUT: "TIMEOUT",
  /** Something failed on the server that is not the client's fault. */
  INTERNAL: "INTERNAL",
  // Refusals of signed mutations: see PROTOCOL.md "Messages: signed mutations".
  /** A signed request failed its check: bad signature, stale timestamp or a replayed nonce. */
  UNAUTHORIZED: "UNAUTHORIZED",
  /** The signer does not own the file it tried to change; nothing changed. */
  NOT_YOURS: "NOT_YOURS",
  /** The target name is taken (publish without replace, or rename onto a file). */
  ALREADY_EXISTS: "ALREADY_EXISTS",
  /** A file name is empty, too long, or holds a slash, "..", NUL or a control character. */
  BAD_NAME: "BAD_NAME",
  /** A publish names a part copy that its replica does not hold (send it again, then retry). */
  MISSING_PARTS: "MISSING_PARTS",
  /** The signer's key may not store parts here (not on the writers list), or is over its quota. */
  NOT_ALLOWED: "NOT_ALLOWED",
  /** The cluster's shared store (etcd) cannot take the change now; every instance would say so. */
  UNAVAILABLE: "UNAVAILABLE",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error a peer sent us, or one we send: carries a catalogued code. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/** The peer closed the connection where an answer was due. */
export class ConnectionClosedError extends ProtocolError {
  /** `notice`: the error frame the peer sent as it closed (its idle timeout), if it sent one. */
  constructor(address: string, notice?: ProtocolError) {
    super(
      "BAD_FRAME",
      `${address} closed the connection${notice ? ` (${notice.code}: ${notice.message})` : ""}`,
      notice ? { cause: notice } : undefined,
    );
  }
}

/**
 * Whether `error` says the connection was gone when it was used: closed or
 * reset by the peer, which an idle connection may have been since its last
 * answer (the instance restarted), with no fault of the peer it now has.
 */
export function isConnectionGone(error: unknown): boolean {
  return error instanceof ConnectionClosedError || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe;
}

/** A ProtocolError the other side sent in an error frame: it did get, and answer, the request. */
export class RemoteProtocolError extends ProtocolError {}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_CODES, value);
}

/** A usage error on the command line: the caller prints it and exits 2. */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** Flattens an error and its cause chain into one line per level. */
export function causeChain(error: unknown): string[] {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 10; depth++) {
    if (current instanceof Error) {
      lines.push(current.message);
      current = current.cause;
    } else {
      lines.push(String(current));
      break;
    }
  }
  return lines;
}
