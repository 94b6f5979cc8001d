/**
 * A client's connection to one instance: connect, hello, then one request at a
 * time. Wire frames stay in here; callers get domain values back. Every reply
 * is checked against the wire's op table (lib/wire/ops.ts): an answer with the
 * wrong op or a bad field is BAD_FRAME, naming the instance.
 */
import { concatBytes } from "../base/concat_bytes.ts";
import { raceDeadline } from "../base/deadline.ts";
import { ConnectionClosedError, ProtocolError } from "../wire/errors.ts";
import { type FileEntry, parseFileEntry } from "../state/manifest.ts";
import { MAX_PART_BYTES, MIN_PART_BYTES } from "../state/config.ts";
import { MAX_PUBLISH_BODY_BYTES } from "../wire/ops_signed.ts";
import {
  type ByteSink,
  encodeFrame,
  encodeFrameHead,
  errorFromHeader,
  FrameReader,
  type Header,
  PROTOCOL_VERSION,
  writeAll,
} from "../wire/frame.ts";
import {
  parseReply,
  parseReplyBody,
  type ReplyBodyOf,
  type ReplyOf,
  type RequestOf,
  type RequestOp,
} from "../wire/ops.ts";
import {
  type FileSummary,
  LOOKUP_REPLY_BUDGET_BYTES,
  MAX_LIST_PAGE_FILES,
} from "../wire/ops_files.ts";
import { type VerifyStatus } from "../wire/ops_repair.ts";
import { type SignedRequest } from "../auth/signed_request.ts";
import { signPartHas, signPartPut } from "../auth/part_put_signature.ts";
import {
  defaultTlsClientOptions,
  looksLikeTls,
  startTls,
  type TlsClientOptions,
  TlsError,
} from "../wire/tls.ts";

export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;

export interface ConnectOptions {
  /** Limit for the TCP connect, and again for the TLS handshake. */
  connectTimeoutMs?: number;
  stallTimeoutMs?: number;
  /** Speak TLS, trusting only these CAs; when absent, as FTS_TLS_CA says (else plain TCP). */
  tls?: TlsClientOptions | undefined;
}
/** How long a read may wait for the next byte before the peer counts as stalled. */
export const DEFAULT_STALL_TIMEOUT_MS = 3_000;
const AGENT = "fts/0.1";
/**
 * The largest file.get reply body a client reads. A real entry is its part
 * list (at most MAX_PUBLISH_BODY_BYTES when published) plus each part's
 * replica ids, under 1.5 times the list; anything bigger is a lying server
 * making the client allocate (JSON.parse takes several times the bytes).
 */
export const MAX_FILE_REPLY_BYTES = MAX_PUBLISH_BODY_BYTES * 3 / 2;

/** "host:port" into its parts; throws TypeError on a bad one. */
export function parseAddress(address: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new TypeError(`Bad server address "${address}": expected HOST:PORT`);
  }
  return { hostname: (match[1] ?? match[2])!, port };
}

export type { FileSummary, VerifyStatus };
export type * from "./peer_types.ts";
import type {
  ClusterInfo,
  FileInfo,
  FilePage,
  ListPosition,
  PartSigner,
  StoredParts,
} from "./peer_types.ts";

export class Peer {
  readonly address: string;
  readonly #conn: Deno.Conn;
  /** Writes to the connection; each must make progress within the stall timeout. */
  readonly #sink: ByteSink;
  readonly reader: FrameReader;
  #closed = false;
  /** The first byte the instance sent: tells a TLS server apart from a broken one. */
  #firstByte: number | undefined;
  /** The instance id the server gave in its hello. */
  id = "";

  private constructor(address: string, conn: Deno.Conn, stallTimeoutMs: number) {
    this.address = address;
    this.#conn = conn;
    // Only the first read is watched; after it, reads go straight to the socket.
    const source = {
      read: (buffer: Uint8Array): Promise<number | null> => {
        if (this.#firstByte !== undefined) return conn.read(buffer);
        return conn.read(buffer).then((n) => {
          if (n !== null && n > 0) this.#firstByte = buffer[0];
          return n;
        });
      },
    };
    this.reader = new FrameReader(source, { timeoutMs: stallTimeoutMs, bufferBytes: 64 * 1024 });
    this.reader.onTimeout = () => this.close();
    // An instance that stops reading (frozen, or its disk hangs) would otherwise
    // block a part.put or a repair's copy forever once the socket buffers fill.
    this.#sink = {
      write: (bytes) =>
        _withStallTimeout(conn.write(bytes), stallTimeoutMs, address, () => this.close()),
    };
  }

  /** Connects and says hello; throws within the connect timeout when the peer is down. */
  static async connect(
    address: string,
    options: ConnectOptions = {},
  ): Promise<Peer> {
    const { hostname, port } = parseAddress(address);
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connecting = Deno.connect({ hostname, port });
    let conn: Deno.TcpConn;
    try {
      // deadline.ts's timers, not setTimeout: a client that sets no timer
      // never loads node:timers (about 4 ms at startup).
      conn = await raceDeadline(
        connecting,
        connectTimeoutMs,
        () =>
          new ProtocolError("TIMEOUT", `Connecting to ${address} took over ${connectTimeoutMs} ms`),
      );
    } catch (error) {
      // A connect that completes after we gave up must not leak.
      connecting.then((late) => late.close(), () => {});
      throw error;
    }
    conn.setNoDelay(true);
    let tls: TlsClientOptions | undefined;
    try {
      tls = options.tls ?? defaultTlsClientOptions();
    } catch (error) {
      conn.close();
      throw error;
    }
    const stream = tls ? await startTls(conn, address, hostname, tls, connectTimeoutMs) : conn;
    const peer = new Peer(address, stream, options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS);
    try {
      const hello: RequestOf<"hello"> = { op: "hello", version: PROTOCOL_VERSION, agent: AGENT };
      await peer.#send(hello);
      const reply = await peer.readReply();
      if (reply.header.op !== "hello" || reply.header.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "VERSION_MISMATCH",
          `${address} answered hello with ${reply.header.op}`,
        );
      }
      peer.id = peer.#check("hello", reply.header).id;
    } catch (error) {
      peer.close();
      if (!tls && looksLikeTls(peer.#firstByte)) {
        throw new TlsError(
          `${address} speaks TLS: pass the CA that signed its certificate with --tls-ca FILE (or FTS_TLS_CA)`,
          { cause: error },
        );
      }
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
    await writeAll(this.#sink, encodeFrame(header, body));
  }

  /** Reads the next frame head; an error frame becomes a thrown ProtocolError. */
  async readReply(): Promise<{ header: Header; bodyLength: number }> {
    const next = await this.#nextFrame();
    if (next instanceof ProtocolError) throw next;
    return next;
  }

  /** The next frame head, or the error an error frame carries (its body read whole). */
  async #nextFrame(): Promise<{ header: Header; bodyLength: number } | ProtocolError> {
    const head = await this.reader.readHead();
    if (head === null) throw new ConnectionClosedError(this.address);
    if (head.header.op !== "error") return head;
    await this.reader.skipBody();
    const error = errorFromHeader(head.header);
    // An instance says TIMEOUT as it closes a connection (idle past its
    // --idle-timeout in a pool, say): the connection is gone, which
    // PeerPool.begin() retries on a new one, not a refusal of the request.
    if (error.code === "TIMEOUT") throw new ConnectionClosedError(this.address, error);
    return error;
  }

  /** Sends a request of op K and checks the reply's header against the op table. */
  async #ask<K extends RequestOp>(
    op: K,
    fields: Omit<RequestOf<K>, "op">,
  ): Promise<{ reply: ReplyOf<K>; bodyLength: number }> {
    await this.#send({ op, ...fields });
    const head = await this.readReply();
    return { reply: this.#check(op, head.header), bodyLength: head.bodyLength };
  }

  /** The reply header to op K, checked; BAD_FRAME naming this instance when it is not one. */
  #check<K extends RequestOp>(op: K, header: Header): ReplyOf<K> {
    try {
      return parseReply(op, header);
    } catch (cause) {
      if (!(cause instanceof ProtocolError)) throw cause;
      throw new ProtocolError("BAD_FRAME", `${this.address} answered ${op} badly`, { cause });
    }
  }

  /** Reads the reply's JSON body (at most `maxBytes`) and checks it against the op table. */
  async #body<K extends RequestOp>(op: K, maxBytes?: number): Promise<ReplyBodyOf<K>> {
    let value: unknown;
    try {
      value = await this.reader.readBodyJson(maxBytes);
    } catch (cause) {
      if (!(cause instanceof ProtocolError) || cause.code !== "BODY_TOO_LARGE") throw cause;
      throw new ProtocolError(
        "BAD_FRAME",
        `${this.address} sent a ${op} reply of ${this.reader.bodyRemaining} bytes, more than the ${maxBytes} allowed`,
        { cause },
      );
    }
    try {
      return parseReplyBody(op, value);
    } catch (cause) {
      if (!(cause instanceof ProtocolError)) throw cause;
      throw new ProtocolError("BAD_FRAME", `${this.address} sent a malformed ${op} reply`, {
        cause,
      });
    }
  }

  async ping(): Promise<void> {
    await this.#ask("ping", {});
  }

  async getFile(name: string): Promise<FileInfo> {
    const { reply } = await this.#ask("file.get", { name });
    const body = await this.#body("file.get", MAX_FILE_REPLY_BYTES);
    return {
      entry: this.#checkedEntry(body.entry),
      instances: body.instances,
      generation: reply.generation,
    };
  }

  /**
   * The entries of several files in one request (`file.lookup`, at most
   * MAX_LOOKUP_NAMES names): each name answered maps to its file, or to
   * undefined when there is none. An instance answers names in order and may
   * stop before the last (LOOKUP_REPLY_BUDGET_BYTES): those left out are
   * missing from the map, to be asked again.
   */
  async lookupFiles(names: readonly string[]): Promise<Map<string, FileInfo | undefined>> {
    const { reply } = await this.#ask("file.lookup", { names: [...names] });
    const body = await this.#body("file.lookup", MAX_FILE_REPLY_BYTES + LOOKUP_REPLY_BUDGET_BYTES);
    if (body.entries.length > names.length) {
      throw new ProtocolError(
        "BAD_FRAME",
        `${this.address} answered ${body.entries.length} names of the ${names.length} asked`,
      );
    }
    const found = new Map<string, FileInfo | undefined>();
    for (const [i, value] of body.entries.entries()) {
      const name = names[i]!;
      if (value === null) {
        found.set(name, undefined);
        continue;
      }
      const entry = this.#checkedEntry(value);
      if (entry.name !== name) {
        throw new ProtocolError(
          "BAD_FRAME",
          `${this.address} answered ${JSON.stringify(name)} with the entry of another name`,
        );
      }
      found.set(name, { entry, instances: body.instances, generation: reply.generation });
    }
    return found;
  }

  /** An entry as a server sent it, checked as a reader of the manifest checks one. */
  #checkedEntry(value: unknown): FileEntry {
    let entry: FileEntry;
    try {
      entry = parseFileEntry(value);
    } catch (cause) {
      throw new ProtocolError("BAD_FRAME", `${this.address} sent a malformed file entry`, {
        cause,
      });
    }
    // Every cluster's part size is within these limits: one outside them is a
    // lie, and an absurd one would have fetch size a huge sparse file.
    if (
      entry.parts.length > 0 &&
      (entry.partSize < MIN_PART_BYTES || entry.partSize > MAX_PART_BYTES)
    ) {
      throw new ProtocolError(
        "BAD_FRAME",
        `${this.address} sent an entry with part size ${entry.partSize}, outside ${MIN_PART_BYTES}..${MAX_PART_BYTES}`,
      );
    }
    return entry;
  }

  /**
   * Every file, asked for page by page (MAX_LIST_PAGE_FILES at a time), so
   * that no instance builds a reply of the whole manifest. Later pages are
   * asked at the first page's generation; a store without history answers
   * at its newest.
   */
  async listFiles(): Promise<FileSummary[]> {
    const files: FileSummary[] = [];
    for await (const page of this.filePages()) files.push(...page.files);
    return files;
  }

  /**
   * The pages of listFiles() as they arrive, in the instance's name order,
   * from just after `from.after` (at `from.generation`) when given. Each page
   * says where the next starts, so a walk cut short can go on from there,
   * also on another instance.
   */
  async *filePages(from: ListPosition = {}): AsyncGenerator<FilePage> {
    let { after, generation } = from;
    while (true) {
      const { reply } = await this.#ask("file.list", {
        limit: MAX_LIST_PAGE_FILES,
        ...(after !== undefined ? { after } : {}),
        ...(generation !== undefined ? { generation } : {}),
      });
      const page = await this.#body("file.list");
      if (page.length > MAX_LIST_PAGE_FILES) {
        throw new ProtocolError(
          "BAD_FRAME",
          `${this.address} sent a file.list page of ${page.length} files, more than the ${MAX_LIST_PAGE_FILES} asked for`,
        );
      }
      const last = page.at(-1)?.name;
      if (last !== undefined && last === after) {
        // A page that ends where the last one did would be asked for forever.
        throw new ProtocolError(
          "BAD_FRAME",
          `${this.address} sent a file.list page that does not go past ${JSON.stringify(after)}`,
        );
      }
      generation ??= reply.generation;
      after = last ?? after;
      const more = reply.more === true && page.length > 0;
      yield {
        files: page,
        next: after === undefined ? { generation } : { after, generation },
        more,
      };
      if (!more) return;
    }
  }

  /** The instance's id, uptime and counters, as it sent them. */
  async stats(): Promise<Record<string, unknown>> {
    return (await this.#ask("stats", {})).reply;
  }

  /** Tells the instance its copy of a part failed the digest; true if it quarantined it. */
  async report(digest: string): Promise<boolean> {
    return (await this.#ask("part.report", { digest })).reply.quarantined;
  }

  /** Which parts the instance stores (digest to size) and which it quarantined. */
  async listParts(): Promise<StoredParts> {
    await this.#ask("part.list", {});
    const body = await this.#body("part.list");
    return { parts: new Map(body.parts), quarantined: new Set(body.quarantined) };
  }

  /**
   * Has the instance re-hash its copy of a part. "corrupt" means the copy
   * failed and the instance has just quarantined it.
   */
  async verifyPart(digest: string): Promise<VerifyStatus> {
    return (await this.#ask("part.verify", { digest })).reply.status;
  }

  /**
   * Asks for a byte range of a part. On success the body (exactly `length`
   * bytes) is then read with `reader.readBody`.
   */
  async requestPart(digest: string, offset: number, length: number): Promise<void> {
    await this.requestParts([{ digest, offset, length }]);
    const refused = await this.partAnswer(length);
    if (refused) throw refused;
  }

  /**
   * Asks for several byte ranges in one write: the instance answers them in
   * order, each read with partAnswer() and its body with `reader.readBody`.
   * Many small parts cost each side one write and one read, not one a part.
   */
  async requestParts(
    ranges: readonly { digest: string; offset: number; length: number }[],
  ): Promise<void> {
    const frames = ranges.map(({ digest, offset, length }) =>
      encodeFrame({ op: "part.get", digest, offset, length } satisfies RequestOf<"part.get">)
    );
    await writeAll(this.#sink, frames.length === 1 ? frames[0]! : concatBytes(...frames));
  }

  /**
   * The next answer to requestParts(): undefined when it is the range's
   * `length` bytes, to be read next; the instance's error when it refused
   * this range (its error frame is read whole: the next answer follows).
   * Anything else (a closed connection, a malformed answer) is thrown, and
   * the connection is then out of step.
   */
  async partAnswer(length: number): Promise<ProtocolError | undefined> {
    const head = await this.#nextFrame();
    if (head instanceof ProtocolError) return head;
    this.#check("part.get", head.header);
    if (head.bodyLength !== length) {
      throw new ProtocolError(
        "BAD_FRAME",
        `${this.address} answered part.get for ${length} bytes with ${head.bodyLength}`,
      );
    }
    return undefined;
  }

  /**
   * Sends a whole part from a source of chunks, signed by `signer` for its
   * cluster (part_put_signature.ts); the server verifies the digest.
   */
  async putPart(
    digest: string,
    size: number,
    chunks: AsyncIterable<Uint8Array>,
    signer: PartSigner,
  ): Promise<{ stored: boolean }> {
    const { cluster, identity } = signer;
    const auth = await signPartPut(identity, { cluster, digest, size });
    const request: RequestOf<"part.put"> = { op: "part.put", digest, cluster, auth };
    await writeAll(this.#sink, encodeFrameHead(request, size));
    let sent = 0;
    for await (const chunk of chunks) {
      if (sent + chunk.length > size) throw new RangeError("Part source gave more than its size");
      await writeAll(this.#sink, chunk);
      sent += chunk.length;
    }
    if (sent !== size) throw new RangeError(`Part source gave ${sent} of ${size} bytes`);
    const reply = await this.readReply();
    return { stored: this.#check("part.put", reply.header).stored };
  }

  /**
   * Size of the instance's copy of a part, or undefined when it holds none.
   * Signed (`signer`) when the copy is about to be used: only then does the
   * instance mark it as in use.
   */
  async hasPart(digest: string, signer?: PartSigner): Promise<number | undefined> {
    const { reply } = await this.#ask(
      "part.has",
      signer
        ? {
          digest,
          cluster: signer.cluster,
          auth: await signPartHas(signer.identity, { cluster: signer.cluster, digest }),
        }
        : { digest },
    );
    return reply.stored ? reply.size : undefined;
  }

  /** The cluster's replica count, part size and instance addresses. */
  async clusterInfo(uploader?: { key: string; name: string }): Promise<ClusterInfo> {
    const { reply } = await this.#ask("cluster.info", uploader ?? {});
    const { instances, domains } = await this.#body("cluster.info");
    const { clusterId, replicas, partSize, quotaBytes: bytes, publishedBytes: published } = reply;
    const quota = bytes === undefined ? {} : { quota: { bytes, published: published ?? 0 } };
    const operator = reply.operator === undefined ? {} : { operator: reply.operator };
    return {
      clusterId,
      replicas,
      partSize,
      instances,
      ...(domains ? { domains } : {}),
      ...quota,
      ...operator,
    };
  }

  /**
   * Sends one request with an optional small body and returns the reply's
   * header, unchecked (its body is discarded); an error frame throws. For
   * tests that speak the wire by hand; the client's own requests are checked.
   */
  async request(header: Header, body?: Uint8Array): Promise<Header> {
    await this.#send(header, body);
    const reply = await this.readReply();
    await this.reader.skipBody();
    return reply.header;
  }

  /** Sends a signed request (signed_request.ts) and returns its checked reply. */
  async requestSigned<K extends SignedRequest["op"]>(
    request: SignedRequest & { op: K },
    body?: Uint8Array,
  ): Promise<ReplyOf<K>> {
    return this.#check(request.op, await this.request(request, body));
  }
}

/** Connects to `address`, runs `fn` with the peer and closes it, whether `fn` succeeds or not. */
export async function withPeer<T>(
  address: string,
  options: ConnectOptions,
  fn: (peer: Peer) => Promise<T>,
): Promise<T> {
  const peer = await Peer.connect(address, options);
  try {
    return await fn(peer);
  } finally {
    peer.close();
  }
}

/**
 * Settles like `write`, unless it takes longer than `timeoutMs` (0: no limit):
 * then `onExpire` closes the connection and the write fails with TIMEOUT.
 */
function _withStallTimeout(
  write: Promise<number>,
  timeoutMs: number,
  address: string,
  onExpire: () => void,
): Promise<number> {
  if (timeoutMs <= 0) return write;
  return raceDeadline(write, timeoutMs, () => {
    onExpire();
    return new ProtocolError("TIMEOUT", `${address} took no data for ${timeoutMs} ms`);
  });
}
