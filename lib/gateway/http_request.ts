/**
 * Reading one HTTP/1.1 request head from a connection, with the limits that
 * keep a hostile client from pinning the gateway:
 *
 * 1. The head (request line and headers) must fit in MAX_REQUEST_HEAD_BYTES:
 *    past it the answer is 431 (414 when even the request line does not fit).
 * 2. The whole head must arrive within REQUEST_HEAD_TIMEOUT_MS of the
 *    connection opening: a client trickling bytes (slowloris) is cut off.
 * 3. A malformed request line or header is 400.
 *
 * The gateway answers one request per connection (it sends `Connection:
 * close`), so bytes after the head are never read: GET and HEAD carry no body.
 */
import { deadline } from "../base/deadline.ts";

/** Largest request head accepted, in bytes: far above what browsers and download tools send. */
export const MAX_REQUEST_HEAD_BYTES = 16 * 1024;
/** How long a client has to send its whole request head. */
export const REQUEST_HEAD_TIMEOUT_MS = 10_000;
/** Bytes read from the socket at a time while looking for the end of the head. */
const _READ_CHUNK_BYTES = 4 * 1024;

export interface HttpRequest {
  method: string;
  /** The request target as sent: a path with an optional query. */
  target: string;
  /** "HTTP/1.1" or "HTTP/1.0". */
  version: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Map<string, string>;
}

/** A request the gateway answers with `status` and closes. */
export class BadRequestError extends Error {
  constructor(readonly status: 400 | 414 | 431 | 505, message: string) {
    super(message);
    this.name = "BadRequestError";
  }
}

/** Why a connection ended without a request: nothing to answer. */
export type NoRequest = "closed" | "timeout";

const _TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Reads the request head; "closed" or "timeout" when there is none to answer
 * (the caller closes the connection), BadRequestError for one it rejects.
 */
export async function readRequestHead(
  conn: Deno.Conn,
  timeoutMs: number = REQUEST_HEAD_TIMEOUT_MS,
  maxBytes: number = MAX_REQUEST_HEAD_BYTES,
): Promise<HttpRequest | NoRequest> {
  let timedOut = false;
  const cancel = deadline(timeoutMs, () => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  });
  const buffer = new Uint8Array(maxBytes + 4);
  let filled = 0;
  try {
    while (true) {
      const chunk = buffer.subarray(filled, Math.min(buffer.length, filled + _READ_CHUNK_BYTES));
      let n: number | null;
      try {
        n = await conn.read(chunk);
      } catch {
        return timedOut ? "timeout" : "closed";
      }
      if (n === null) return timedOut ? "timeout" : "closed";
      const searchFrom = Math.max(0, filled - 3);
      filled += n;
      const end = _headEnd(buffer.subarray(0, filled), searchFrom);
      if (end >= 0) return parseRequestHead(new TextDecoder().decode(buffer.subarray(0, end)));
      if (filled >= maxBytes) {
        const lineEnd = buffer.subarray(0, filled).indexOf(10);
        throw lineEnd < 0
          ? new BadRequestError(414, `The request line is longer than ${maxBytes} bytes`)
          : new BadRequestError(431, `The request headers are longer than ${maxBytes} bytes`);
      }
    }
  } finally {
    cancel();
  }
}

/**
 * Parses a request head (without its final empty line). Lines end in CRLF, or
 * in a bare LF, which RFC 9112 (section 2.2) lets a server take as one.
 */
export function parseRequestHead(text: string): HttpRequest {
  // Empty lines before the request line are skipped (RFC 9112 section 2.2).
  const lines = text.replace(/^(?:\r?\n)+/, "").replace(/\r$/, "").split(/\r?\n/);
  const requestLine = lines[0] ?? "";
  const match = /^([A-Z!#$%&'*+\-.^_`|~0-9a-z]+) (\S+) (HTTP\/\d\.\d)$/.exec(requestLine);
  if (!match) {
    throw new BadRequestError(400, `Bad request line ${JSON.stringify(requestLine.slice(0, 80))}`);
  }
  const [, method, target, version] = match as unknown as [string, string, string, string];
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new BadRequestError(505, `HTTP version ${version} is not supported`);
  }
  const headers = new Map<string, string>();
  let hosts = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!_TOKEN.test(name)) {
      throw new BadRequestError(400, `Bad header line ${JSON.stringify(line.slice(0, 80))}`);
    }
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === "host") hosts++;
    const earlier = headers.get(key);
    headers.set(key, earlier === undefined ? value : `${earlier}, ${value}`);
  }
  // RFC 9112 section 3.2: an HTTP/1.1 request without Host, or any with two, is a 400.
  if (hosts > 1) throw new BadRequestError(400, "The request has more than one Host header");
  if (hosts === 0 && version === "HTTP/1.1") {
    throw new BadRequestError(400, "An HTTP/1.1 request needs a Host header");
  }
  return { method, target, version, headers };
}

/**
 * Where the head in `bytes` ends (the LF that ends its last line, before the
 * empty line: CRLF CRLF, or LF LF from a client that sends bare LFs), looking
 * from `from`; -1 while it has not arrived.
 */
function _headEnd(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(10, from); i >= 0; i = bytes.indexOf(10, i + 1)) {
    if (bytes[i + 1] === 10 || (bytes[i + 1] === 13 && bytes[i + 2] === 10)) return i;
  }
  return -1;
}
