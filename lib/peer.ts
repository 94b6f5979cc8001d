/**
 * A client's connection to one instance: connect, hello, then one request at a
 * time. Wire frames stay in here; callers get domain values back.
 */
import { ProtocolError } from "./errors.ts";
import { type FileEntry, parseFileEntry } from "./manifest.ts";
import {
  encodeFrame,
  encodeFrameHead,
  errorFromHeader,
  FrameReader,
  type Header,
  PROTOCOL_VERSION,
  writeAll,
} from "./protocol.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
/** How long a read may wait for the next byte before the peer counts as stalled. */
export const DEFAULT_STALL_TIMEOUT_MS = 3_000;
const AGENT = "fts/0.1";

/** "host:port" into its parts; throws TypeError on a bad one. */
export function parseAddress(address: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new TypeError(`Bad server address "${address}": expected HOST:PORT`);
  }
  return { hostname: (match[1] ?? match[2])!, port };
}

export interface FileInfo {
  entry: FileEntry;
  /** Instance id to "host:port". */
  instances: Record<string, string>;
  generation: number;
}

export interface FileSummary {
  name: string;
  size: number;
  parts: number;
  owner: string;
  created: string;
}

export class Peer {
  readonly address: string;
  readonly #conn: Deno.TcpConn;
  readonly reader: FrameReader;
  #closed = false;
  /** The instance id the server gave in its hello. */
  id = "";

  private constructor(address: string, conn: Deno.TcpConn, stallTimeoutMs: number) {
    this.address = address;
    this.#conn = conn;
    this.reader = new FrameReader(conn, { timeoutMs: stallTimeoutMs, bufferBytes: 64 * 1024 });
    this.reader.onTimeout = () => this.close();
  }

  /** Connects and says hello; throws within the connect timeout when the peer is down. */
  static async connect(
    address: string,
    options: { connectTimeoutMs?: number; stallTimeoutMs?: number } = {},
  ): Promise<Peer> {
    const { hostname, port } = parseAddress(address);
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connecting = Deno.connect({ hostname, port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ProtocolError(
              "TIMEOUT",
              `Connecting to ${address} took over ${connectTimeoutMs} ms`,
            ),
          ),
        connectTimeoutMs,
      );
    });
    let conn: Deno.TcpConn;
    try {
      conn = await Promise.race([connecting, timeout]);
    } catch (error) {
      // A connect that completes after we gave up must not leak.
      connecting.then((late) => late.close(), () => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
    conn.setNoDelay(true);
    const peer = new Peer(address, conn, options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS);
    try {
      const reply = await peer.#roundTrip({ op: "hello", version: PROTOCOL_VERSION, agent: AGENT });
      if (reply.header.op !== "hello" || reply.header.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "VERSION_MISMATCH",
          `${address} answered hello with ${reply.header.op}`,
        );
      }
      peer.id = String(reply.header.id ?? "");
    } catch (error) {
      peer.close();
      throw error;
    }
    return peer;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  async #send(header: Header, body?: Uint8Array): Promise<void> {
    await writeAll(this.#conn, encodeFrame(header, body));
  }

  /** Reads the next frame head; an error frame becomes a thrown ProtocolError. */
  async readReply(): Promise<{ header: Header; bodyLength: number }> {
    const head = await this.reader.readHead();
    if (head === null) {
      throw new ProtocolError("BAD_FRAME", `${this.address} closed the connection`);
    }
    if (head.header.op === "error") {
      await this.reader.skipBody();
      throw errorFromHeader(head.header);
    }
    return head;
  }

  async #roundTrip(header: Header): Promise<{ header: Header; bodyLength: number }> {
    await this.#send(header);
    return await this.readReply();
  }

  async ping(): Promise<void> {
    const reply = await this.#roundTrip({ op: "ping" });
    if (reply.header.op !== "pong") throw new ProtocolError("BAD_FRAME", "Expected pong");
  }

  async getFile(name: string): Promise<FileInfo> {
    const reply = await this.#roundTrip({ op: "file.get", name });
    const body = await this.reader.readBodyJson() as { entry?: unknown; instances?: unknown };
    const instances: Record<string, string> = {};
    if (typeof body?.instances === "object" && body.instances !== null) {
      for (const [id, address] of Object.entries(body.instances)) {
        if (typeof address === "string") instances[id] = address;
      }
    }
    let entry: FileEntry;
    try {
      entry = parseFileEntry(body?.entry);
    } catch (cause) {
      throw new ProtocolError("BAD_FRAME", `${this.address} sent a malformed file entry`, {
        cause,
      });
    }
    return { entry, instances, generation: Number(reply.header.generation ?? 0) };
  }

  async listFiles(): Promise<FileSummary[]> {
    await this.#roundTrip({ op: "file.list" });
    const body = await this.reader.readBodyJson();
    if (!Array.isArray(body)) throw new ProtocolError("BAD_FRAME", "file list is not a list");
    return body as FileSummary[];
  }

  async stats(): Promise<Record<string, unknown>> {
    const reply = await this.#roundTrip({ op: "stats" });
    return reply.header;
  }

  /** Tells the instance its copy of a part failed the digest; true if it quarantined it. */
  async report(digest: string): Promise<boolean> {
    const reply = await this.#roundTrip({ op: "part.report", digest });
    return reply.header.quarantined === true;
  }

  /**
   * Asks for a byte range of a part. On success the body (exactly `length`
   * bytes) is then read with `reader.readBody`.
   */
  async requestPart(digest: string, offset: number, length: number): Promise<void> {
    const reply = await this.#roundTrip({ op: "part.get", digest, offset, length });
    if (reply.header.op !== "data" || reply.bodyLength !== length) {
      throw new ProtocolError(
        "BAD_FRAME",
        `${this.address} answered part.get with ${reply.header.op}`,
      );
    }
  }

  /** Sends a whole part from a source of chunks; the server verifies the digest. */
  async putPart(
    digest: string,
    size: number,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<{ stored: boolean }> {
    await writeAll(this.#conn, encodeFrameHead({ op: "part.put", digest }, size));
    let sent = 0;
    for await (const chunk of chunks) {
      if (sent + chunk.length > size) throw new RangeError("Part source gave more than its size");
      await writeAll(this.#conn, chunk);
      sent += chunk.length;
    }
    if (sent !== size) throw new RangeError(`Part source gave ${sent} of ${size} bytes`);
    const reply = await this.readReply();
    return { stored: reply.header.stored === true };
  }
}
