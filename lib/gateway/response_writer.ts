/**
 * Writing a response to a client with a deadline on every write, as the
 * instances have: a client that stops reading (stalled, or slow on purpose)
 * is cut off after WRITE_STALL_TIMEOUT_MS without progress, so it cannot pin
 * the parts the gateway holds for it. Bytes go out in chunks of at most
 * WRITE_CHUNK_BYTES, so the deadline measures progress, not the whole body.
 */
import { deadline, raceDeadline } from "../base/deadline.ts";

/** How long one write may wait for the client to take bytes before the connection is closed. */
export const WRITE_STALL_TIMEOUT_MS = 30_000;
/** Largest slice handed to the socket at once. */
export const WRITE_CHUNK_BYTES = 256 * 1024;
/** How long, and for how many bytes, a finished connection reads what the client still sends. */
export const LINGER_MS = 2_000;
export const LINGER_BYTES = 4 * 1024 * 1024;

const _REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  304: "Not Modified",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  412: "Precondition Failed",
  414: "URI Too Long",
  416: "Range Not Satisfiable",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** A write that made no progress within the stall timeout. */
export class WriteStallError extends Error {
  constructor(timeoutMs: number) {
    super(`The client took no bytes for ${timeoutMs} ms`);
    this.name = "WriteStallError";
  }
}

export class ResponseWriter {
  readonly #conn: Deno.Conn;
  readonly #stallTimeoutMs: number;
  #closed = false;
  /** Body bytes written so far (after the head). */
  bodyBytes = 0;
  headSent = false;

  constructor(conn: Deno.Conn, stallTimeoutMs: number = WRITE_STALL_TIMEOUT_MS) {
    this.#conn = conn;
    this.#stallTimeoutMs = stallTimeoutMs;
  }

  /** Sends the status line and headers; every response closes the connection after it. */
  async head(status: number, headers: Record<string, string | number>): Promise<void> {
    const lines = [`HTTP/1.1 ${status} ${_REASONS[status] ?? "Unknown"}`];
    const all = { ...headers, Date: new Date().toUTCString(), Connection: "close" };
    for (const [name, value] of Object.entries(all)) lines.push(`${name}: ${value}`);
    this.headSent = true;
    await this.#writeAll(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
  }

  /** Sends body bytes. */
  async body(bytes: Uint8Array): Promise<void> {
    await this.#writeAll(bytes);
    this.bodyBytes += bytes.length;
  }

  /** A whole small response: status, headers and body. */
  async send(
    status: number,
    headers: Record<string, string | number>,
    body: string | Uint8Array,
    withBody: boolean = true,
  ): Promise<void> {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    await this.head(status, { ...headers, "Content-Length": bytes.length });
    if (withBody) await this.body(bytes);
  }

  /**
   * Ends a connection whose answer went out whole, in stages (RFC 9112
   * section 9.6): the write side is shut, so the client reads to the end of
   * the answer, then what the client still sends (a request body, pipelined
   * requests) is read and dropped until it closes, for at most LINGER_MS and
   * LINGER_BYTES. Closed at once with such bytes unread, the connection is
   * reset by the kernel, and a reset can destroy the end of the answer
   * before the client has read it: a review saw a 3 MB answer cut at 128 KB.
   */
  async finish(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#conn.closeWrite();
      const drain = async () => {
        const buffer = new Uint8Array(64 * 1024);
        for (let read = 0; read < LINGER_BYTES;) {
          const n = await this.#conn.read(buffer);
          if (n === null) return;
          read += n;
        }
      };
      await raceDeadline(drain(), LINGER_MS, () => new Error("linger over"));
    } catch {
      // Gone already, or lingered long enough.
    } finally {
      this.close();
    }
  }

  /**
   * Closes the connection. Called mid-body, this is how the gateway aborts a
   * response it cannot finish: the client sees fewer bytes than
   * Content-Length said, an error, never a short file that looks complete.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const slice = bytes.subarray(done, Math.min(bytes.length, done + WRITE_CHUNK_BYTES));
      done += await this.#write(slice);
    }
  }

  async #write(bytes: Uint8Array): Promise<number> {
    let cancel = () => {};
    const stalled = new Promise<never>((_, reject) => {
      cancel = deadline(this.#stallTimeoutMs, () => {
        this.close();
        reject(new WriteStallError(this.#stallTimeoutMs));
      });
    });
    stalled.catch(() => {});
    try {
      return await Promise.race([this.#conn.write(bytes), stalled]);
    } finally {
      cancel();
    }
  }
}
