/**
 * Frames: how every message, request or reply, crosses a connection. PROTOCOL.md
 * specifies the layout; ops.ts says which headers each op sends and answers.
 *
 * ```
 *  0               4                               12            12+H          12+H+B
 *  +---------------+-------------------------------+-------------+-------------+
 *  | H: u32 BE     | B: u64 BE                     | header      | body        |
 *  | header bytes  | body bytes                    | UTF-8 JSON  | raw bytes   |
 *  +---------------+-------------------------------+-------------+-------------+
 * ```
 *
 * A reader checks the declared lengths against the limits below before it
 * buffers anything, and hands a body out in caller-owned buffers, so a part
 * never sits whole in memory. Error frames (op "error") carry a code from the
 * catalogue in errors.ts.
 */
import { raceDeadline } from "../base/deadline.ts";
import { type ErrorCode, isErrorCode, ProtocolError, RemoteProtocolError } from "./errors.ts";

export const PROTOCOL_VERSION = 1;
/** Bytes before the header: header length (u32) and body length (u64). */
export const PREFIX_BYTES = 12;
/** Largest header a peer may send. Headers are small JSON objects. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Largest body any frame may declare. Parts and JSON listings must fit. */
export const MAX_BODY_BYTES = 1024 * 1024 * 1024;
/** Largest JSON body (file entries, listings) a peer will buffer. */
export const MAX_JSON_BODY_BYTES = 256 * 1024 * 1024;

/** A decoded header: a JSON object with a non-empty string `op`; ops.ts types each op's fields. */
export type Header = { op: string; [field: string]: unknown };

const encoder = new TextEncoder();
/** ignoreBOM: text that starts with U+FEFF keeps it (see manifest_layout.ts). */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Encodes the prefix and header of a frame whose body follows separately. */
export function encodeFrameHead(header: Header, bodyLength = 0): Uint8Array {
  if (!Number.isSafeInteger(bodyLength) || bodyLength < 0 || bodyLength > MAX_BODY_BYTES) {
    throw new RangeError(`Body length ${bodyLength} is outside 0..MAX_BODY_BYTES`);
  }
  const json = encoder.encode(JSON.stringify(header));
  if (json.length > MAX_HEADER_BYTES) {
    throw new RangeError(`Header of ${json.length} bytes exceeds MAX_HEADER_BYTES`);
  }
  const out = new Uint8Array(PREFIX_BYTES + json.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length);
  view.setBigUint64(4, BigInt(bodyLength));
  out.set(json, PREFIX_BYTES);
  return out;
}

/** Encodes a whole frame with a small in-memory body. */
export function encodeFrame(header: Header, body?: Uint8Array): Uint8Array {
  const head = encodeFrameHead(header, body?.length ?? 0);
  if (!body || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/** Decodes the 12-byte prefix: returns header and body lengths, checking limits. */
export function decodePrefix(prefix: Uint8Array): { headerLength: number; bodyLength: number } {
  if (prefix.length < PREFIX_BYTES) throw new ProtocolError("BAD_FRAME", "Truncated frame prefix");
  const view = new DataView(prefix.buffer, prefix.byteOffset, PREFIX_BYTES);
  const headerLength = view.getUint32(0);
  const bodyLength = view.getBigUint64(4);
  if (headerLength === 0) throw new ProtocolError("BAD_FRAME", "Frame has an empty header");
  if (headerLength > MAX_HEADER_BYTES) {
    throw new ProtocolError(
      "HEADER_TOO_LARGE",
      `Header of ${headerLength} bytes exceeds MAX_HEADER_BYTES (${MAX_HEADER_BYTES})`,
    );
  }
  if (bodyLength > BigInt(MAX_BODY_BYTES)) {
    throw new ProtocolError(
      "BODY_TOO_LARGE",
      `Body of ${bodyLength} bytes exceeds MAX_BODY_BYTES (${MAX_BODY_BYTES})`,
    );
  }
  return { headerLength, bodyLength: Number(bodyLength) };
}

/** Decodes header bytes into an object with a string `op`. */
export function decodeHeader(bytes: Uint8Array): Header {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (cause) {
    throw new ProtocolError("BAD_FRAME", "Header is not valid UTF-8 JSON", { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("BAD_FRAME", "Header is not a JSON object");
  }
  const op = (value as Record<string, unknown>).op;
  if (typeof op !== "string" || op.length === 0) {
    throw new ProtocolError("BAD_FRAME", "Header has no op");
  }
  return value as Header;
}

/**
 * Longest error message put on the wire. Messages may quote client input (a
 * file name escaped twice); bounding them keeps every error header far below
 * MAX_HEADER_BYTES, so an error can always be sent.
 */
export const MAX_ERROR_MESSAGE_CHARS = 1024;

/** Builds an error frame header from any thrown value. */
export function errorHeader(error: unknown): Header {
  if (error instanceof ProtocolError) {
    const message = error.message.length > MAX_ERROR_MESSAGE_CHARS
      ? error.message.slice(0, MAX_ERROR_MESSAGE_CHARS - 3) + "..."
      : error.message;
    return { op: "error", code: error.code, message };
  }
  return { op: "error", code: "INTERNAL", message: "Internal server error" };
}

/** Turns an error frame from a peer into a ProtocolError. */
export function errorFromHeader(header: Header): ProtocolError {
  const code: ErrorCode = isErrorCode(header.code) ? header.code : "INTERNAL";
  const message = typeof header.message === "string" ? header.message : "Unknown error";
  return new RemoteProtocolError(code, message);
}

/** Something a FrameReader can pull bytes from: a Deno.Conn, or a test double. */
export interface ByteSource {
  read(buffer: Uint8Array): Promise<number | null>;
}

/** Something frames can be written to. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<number>;
}

/** Writes every byte, looping over short writes. */
export async function writeAll(sink: ByteSink, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    done += await sink.write(done === 0 ? bytes : bytes.subarray(done));
  }
}

/** Raised when a read waited longer than its timeout. */
export class ReadTimeoutError extends ProtocolError {
  constructor(timeoutMs: number) {
    super("TIMEOUT", `No data for ${timeoutMs} ms`);
    this.name = "ReadTimeoutError";
  }
}

/**
 * Reads frames from a byte source. Small reads are buffered; body bytes are
 * handed out in caller-owned buffers so a part never sits whole in memory.
 */
export class FrameReader {
  readonly #source: ByteSource;
  readonly #buffer: Uint8Array;
  #start = 0;
  #end = 0;
  #bodyRemaining = 0;
  /** Milliseconds a single read may wait for data; 0 waits forever. */
  timeoutMs: number;
  /** Called when a read times out, to abort the source (close the socket). */
  onTimeout: (() => void) | undefined;
  /** Total bytes read from the source. */
  bytesRead = 0;

  constructor(source: ByteSource, options: { bufferBytes?: number; timeoutMs?: number } = {}) {
    this.#source = source;
    this.#buffer = new Uint8Array(options.bufferBytes ?? 64 * 1024);
    this.timeoutMs = options.timeoutMs ?? 0;
  }

  /** Bytes read from the source and not handed out yet. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /** Bytes of the current frame's body not yet consumed. */
  get bodyRemaining(): number {
    return this.#bodyRemaining;
  }

  async #sourceRead(into: Uint8Array): Promise<number | null> {
    if (this.timeoutMs <= 0) {
      const n = await this.#source.read(into);
      if (n !== null) this.bytesRead += n;
      return n;
    }
    const timeoutMs = this.timeoutMs;
    const n = await raceDeadline(this.#source.read(into), timeoutMs, () => {
      this.onTimeout?.();
      return new ReadTimeoutError(timeoutMs);
    });
    if (n !== null) this.bytesRead += n;
    return n;
  }

  /** Ensures at least `count` bytes are buffered; false on clean EOF before any byte. */
  async #fill(count: number): Promise<boolean> {
    if (this.#end - this.#start >= count) return true;
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end < count) {
      const n = await this.#sourceRead(this.#buffer.subarray(this.#end));
      if (n === null) {
        if (this.#end === 0) return false;
        throw new ProtocolError("BAD_FRAME", "Connection closed in the middle of a frame");
      }
      this.#end += n;
    }
    return true;
  }

  /**
   * Reads the next frame's prefix and header. Returns null on a clean end of
   * stream between frames. The body must be consumed before the next call.
   */
  async readHead(): Promise<{ header: Header; bodyLength: number } | null> {
    if (this.#bodyRemaining > 0) await this.skipBody();
    if (!(await this.#fill(PREFIX_BYTES))) return null;
    const { headerLength, bodyLength } = decodePrefix(
      this.#buffer.subarray(this.#start, this.#start + PREFIX_BYTES),
    );
    this.#start += PREFIX_BYTES;
    let headerBytes: Uint8Array;
    if (headerLength <= this.#buffer.length) {
      if (!(await this.#fill(headerLength))) {
        throw new ProtocolError("BAD_FRAME", "Connection closed before the header");
      }
      headerBytes = this.#buffer.subarray(this.#start, this.#start + headerLength);
      this.#start += headerLength;
    } else {
      headerBytes = new Uint8Array(headerLength);
      await this.#readExact(headerBytes);
    }
    const header = decodeHeader(headerBytes);
    this.#bodyRemaining = bodyLength;
    return { header, bodyLength };
  }

  async #readExact(into: Uint8Array): Promise<void> {
    let done = 0;
    const buffered = Math.min(this.#end - this.#start, into.length);
    if (buffered > 0) {
      into.set(this.#buffer.subarray(this.#start, this.#start + buffered));
      this.#start += buffered;
      done = buffered;
    }
    while (done < into.length) {
      const n = await this.#sourceRead(into.subarray(done));
      if (n === null) throw new ProtocolError("BAD_FRAME", "Connection closed mid-frame");
      done += n;
    }
  }

  /**
   * Reads up to `into.length` bytes of the current body into `into`.
   * Returns the count read, or 0 once the body is exhausted.
   */
  async readBody(into: Uint8Array): Promise<number> {
    if (this.#bodyRemaining === 0) return 0;
    const want = Math.min(into.length, this.#bodyRemaining);
    const buffered = this.#end - this.#start;
    let n: number;
    if (buffered > 0) {
      n = Math.min(want, buffered);
      into.set(this.#buffer.subarray(this.#start, this.#start + n));
      this.#start += n;
    } else {
      const got = await this.#sourceRead(into.subarray(0, want));
      if (got === null) {
        throw new ProtocolError(
          "BAD_FRAME",
          `Connection closed with ${this.#bodyRemaining} body bytes outstanding`,
        );
      }
      n = got;
    }
    this.#bodyRemaining -= n;
    return n;
  }

  /** Reads the whole current body into memory; for small JSON bodies only. */
  async readBodyBytes(maxBytes = MAX_JSON_BODY_BYTES): Promise<Uint8Array> {
    if (this.#bodyRemaining > maxBytes) {
      throw new ProtocolError("BODY_TOO_LARGE", `Body of ${this.#bodyRemaining} bytes is too big`);
    }
    const out = new Uint8Array(this.#bodyRemaining);
    let done = 0;
    while (done < out.length) done += await this.readBody(out.subarray(done));
    return out;
  }

  /** Reads the current body as JSON. */
  async readBodyJson(maxBytes = MAX_JSON_BODY_BYTES): Promise<unknown> {
    const bytes = await this.readBodyBytes(maxBytes);
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch (cause) {
      throw new ProtocolError("BAD_FRAME", "Body is not valid JSON", { cause });
    }
  }

  /** Discards the rest of the current body. */
  async skipBody(): Promise<void> {
    const scratch = new Uint8Array(Math.min(this.#bodyRemaining, 256 * 1024));
    while (this.#bodyRemaining > 0) await this.readBody(scratch);
  }
}

/** Encodes a JSON value as a frame body. */
export function jsonBody(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}
