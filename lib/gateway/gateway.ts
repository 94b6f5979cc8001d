/**
 * The HTTP gateway: an HTTP/1.1 (or HTTPS) server that serves every file of
 * the cluster to standard clients (curl, wget, browsers, aria2c), pulling
 * parts from the instances over the wire and verifying each before sending.
 *
 * Routes: `GET /` (the index; `?format=json` as JSON), `GET|HEAD /files/NAME`
 * (the file, with ranges and validators: file_response.ts),
 * `GET /files/NAME?metalink` (its Metalink document; also at NAME.meta4 unless
 * the cluster holds a file of that name), `GET /stats` (counters).
 *
 * Every connection carries one request and is closed after the answer, which
 * keeps the limits simple: the request head has a size limit and a deadline
 * (http_request.ts), every write a stall deadline (response_writer.ts), and
 * at most MAX_CONNECTIONS are served at once (more are closed at once).
 * Memory for parts is one PartBudget shared by every response.
 */
import { deadline } from "../base/deadline.ts";
import { PartReader, type PartReadEvent } from "../client/part_reader.ts";
import { type ConnectOptions, DEFAULT_STALL_TIMEOUT_MS } from "../client/peer.ts";
import { PeerPool } from "../client/peer_pool.ts";
import { FetchError } from "../client/fetch_error.ts";
import { type FileEntry, normalizeFileName, validateFileName } from "../state/manifest.ts";
import { isWildcardAddress } from "../wire/host_address.ts";
import type { TlsClientOptions, TlsServerOptions } from "../wire/tls.ts";
import { ClusterFiles, FileNotFoundError } from "./cluster_files.ts";
import { ResponseAbortedError, serveFile } from "./file_response.ts";
import type { GatewaySource } from "./gateway_source.ts";
import {
  BadRequestError,
  type HttpRequest,
  readRequestHead,
  REQUEST_HEAD_TIMEOUT_MS,
} from "./http_request.ts";
import { indexFiles, indexHtml, notFoundHtml } from "./index_page.ts";
import { METALINK_MEDIA_TYPE, metalinkDocument } from "./metalink.ts";
import { PartBudget } from "./part_budget.ts";
import { ResponseWriter, WRITE_STALL_TIMEOUT_MS, WriteStallError } from "./response_writer.ts";
import { DEFAULT_PARTS_IN_FLIGHT } from "./verified_parts.ts";

/** Connections served at once; more are closed as soon as they are accepted. */
export const MAX_CONNECTIONS = 256;
/**
 * Connections from one client address served at once (a browser opens 6, aria2c
 * 16 at most to one host): one address alone cannot take every connection.
 */
export const MAX_CONNECTIONS_PER_ADDRESS = 64;
/** Pause before accepting again after accept() failed (e.g. out of descriptors). */
export const ACCEPT_RETRY_MS = 100;
/** Bytes of parts held in memory across every response (each part is verified whole). */
export const DEFAULT_PART_BUDGET_BYTES = 256 * 1024 * 1024;
/** How long the gateway waits for an instance to connect. */
export const INSTANCE_CONNECT_TIMEOUT_MS = 2_000;

export interface GatewayOptions {
  source: GatewaySource;
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** Serve HTTPS with this certificate and key. */
  tls?: TlsServerOptions | undefined;
  /** Speak TLS to the instances, trusting these CAs. */
  instanceTls?: TlsClientOptions | undefined;
  /** The base URL clients reach this gateway at, when not its listening address. */
  publicUrl?: string | undefined;
  partBudgetBytes?: number;
  partsInFlight?: number;
  writeStallTimeoutMs?: number;
  requestHeadTimeoutMs?: number;
  /** How long an instance may stall a part read before the gateway fails over. */
  instanceStallTimeoutMs?: number;
  /** Check every part with its SHA-256, never with its XXH3-128 (--verify). */
  verify?: boolean | undefined;
  /** One line per notable event (aborts, failovers, bad copies). */
  log?: (line: string) => void;
}

export interface GatewayCounters {
  connections: number;
  requests: number;
  /** Connections closed for sending more than MAX_CONNECTIONS at once. */
  refused: number;
  bodyBytes: number;
  partsSent: number;
  /** Responses cut off because a part could not be read. */
  aborted: number;
  /** Responses cut off because the client stopped reading. */
  stalled: number;
  failovers: number;
  digestMismatches: number;
}

export class Gateway {
  readonly url: string;
  readonly port: number;
  readonly counters: GatewayCounters = {
    connections: 0,
    requests: 0,
    refused: 0,
    bodyBytes: 0,
    partsSent: 0,
    aborted: 0,
    stalled: 0,
    failovers: 0,
    digestMismatches: 0,
  };
  readonly #options: GatewayOptions;
  readonly #listener: Deno.Listener;
  readonly #files: ClusterFiles;
  readonly #pool: PeerPool;
  readonly #reader: PartReader;
  readonly #budget: PartBudget;
  readonly #open = new Set<Deno.Conn>();
  /** Connections open per client address. */
  readonly #perAddress = new Map<string, number>();
  readonly #log: (line: string) => void;
  #withdraw: () => Promise<void> = async () => {};
  #serving: Promise<void> = Promise.resolve();
  #stopping = false;

  /** Whether other gateways list this one (not when it listens on every address, with no public URL). */
  get announced(): boolean {
    return this.#options.publicUrl !== undefined || !isWildcardAddress(this.#options.hostname);
  }

  private constructor(options: GatewayOptions, listener: Deno.Listener) {
    this.#options = options;
    this.#listener = listener;
    this.#log = options.log ?? (() => {});
    const addr = listener.addr as Deno.NetAddr;
    this.port = addr.port;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    this.url = options.publicUrl?.replace(/\/+$/, "") ??
      `${options.tls ? "https" : "http"}://${host}:${addr.port}`;
    const connect: ConnectOptions = {
      connectTimeoutMs: INSTANCE_CONNECT_TIMEOUT_MS,
      stallTimeoutMs: options.instanceStallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
      tls: options.instanceTls,
    };
    this.#files = new ClusterFiles(options.source, connect);
    this.#pool = new PeerPool(connect);
    this.#reader = new PartReader({
      pool: this.#pool,
      addressOf: this.#files.addressOf,
      tls: options.instanceTls,
      sha256Only: options.verify,
      onEvent: (event) => this.#onPartEvent(event),
    });
    this.#budget = new PartBudget(options.partBudgetBytes ?? DEFAULT_PART_BUDGET_BYTES);
  }

  /** Listens, announces itself to the source, and serves until stop(). */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const listener = options.tls
      ? Deno.listenTls({
        hostname: options.hostname,
        port: options.port,
        cert: options.tls.cert,
        key: options.tls.key,
      })
      : Deno.listen({ hostname: options.hostname, port: options.port });
    const gateway = new Gateway(options, listener);
    try {
      // Listening on every address, its own URL says none a client can dial:
      // only a --public-url goes to the other gateways' Metalink documents.
      if (gateway.announced) gateway.#withdraw = await options.source.announce(gateway.url);
    } catch (error) {
      listener.close();
      throw error;
    }
    gateway.#serving = gateway.#acceptLoop();
    return gateway;
  }

  /** Stops accepting, closes every connection and withdraws the announcement. */
  async stop(): Promise<void> {
    this.#stopping = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    await this.#serving;
    this.#pool.closeAll();
    await this.#reader.reportsSettled();
    await this.#withdraw();
  }

  get partBytesHeld(): number {
    return this.#budget.usedBytes;
  }

  async #acceptLoop(): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#stopping) return;
        // Out of descriptors, say: accept again after a pause rather than stop serving.
        await new Promise<void>((resolve) => deadline(ACCEPT_RETRY_MS, resolve));
        continue;
      }
      this.counters.connections++;
      const address = (conn.remoteAddr as Deno.NetAddr).hostname;
      const fromAddress = this.#perAddress.get(address) ?? 0;
      if (this.#open.size >= MAX_CONNECTIONS || fromAddress >= MAX_CONNECTIONS_PER_ADDRESS) {
        this.counters.refused++;
        conn.close();
        continue;
      }
      this.#open.add(conn);
      this.#perAddress.set(address, fromAddress + 1);
      void this.#serve(conn).finally(() => {
        this.#open.delete(conn);
        const left = (this.#perAddress.get(address) ?? 1) - 1;
        if (left > 0) this.#perAddress.set(address, left);
        else this.#perAddress.delete(address);
      });
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const writer = new ResponseWriter(
      conn,
      this.#options.writeStallTimeoutMs ?? WRITE_STALL_TIMEOUT_MS,
    );
    // A HEAD is answered without content, errors too (RFC 9110 section 9.3.2).
    let withBody = true;
    try {
      let request: HttpRequest | "closed" | "timeout";
      try {
        request = await readRequestHead(
          conn,
          this.#options.requestHeadTimeoutMs ?? REQUEST_HEAD_TIMEOUT_MS,
        );
      } catch (error) {
        if (!(error instanceof BadRequestError)) throw error;
        await writer.send(error.status, { "Content-Type": "text/plain" }, `${error.message}\n`);
        return;
      }
      if (typeof request === "string") return;
      this.counters.requests++;
      withBody = request.method !== "HEAD";
      const client = (conn.remoteAddr as Deno.NetAddr).hostname;
      await this.#route(request, writer, withBody, client);
    } catch (error) {
      if (error instanceof WriteStallError) {
        this.counters.stalled++;
        this.#log(`client stalled: ${error.message}; connection closed`);
      } else if (error instanceof ResponseAbortedError) {
        this.#log(error.message);
        // Cut short on purpose: closed at once, the client sees too few bytes.
        writer.close();
      } else if (!writer.headSent) {
        const message = `${(error as Error).message}\n`;
        await writer.send(500, { "Content-Type": "text/plain" }, message, withBody).catch(() => {});
      }
      // Anything else is the client going away mid-answer: nothing to tell.
    } finally {
      await writer.finish();
    }
  }

  async #route(
    request: HttpRequest,
    writer: ResponseWriter,
    withBody: boolean,
    client: string,
  ): Promise<void> {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return await writer.send(
        405,
        { "Allow": "GET, HEAD", "Content-Type": "text/plain" },
        `Method ${request.method} is not allowed: this gateway only reads (GET, HEAD)\n`,
      );
    }
    const { path, query } = _splitTarget(request.target);
    if (path === "/" || path === "/index.html") {
      let rows;
      try {
        rows = await this.#files.rows();
      } catch (error) {
        if (error instanceof FetchError) return await _unavailable(writer, error, withBody);
        throw error;
      }
      if (query.get("format") === "json") {
        const body = JSON.stringify({ files: indexFiles(rows) }, null, 2) + "\n";
        return await writer.send(200, { "Content-Type": "application/json" }, body, withBody);
      }
      return await writer.send(
        200,
        { "Content-Type": "text/html; charset=utf-8" },
        indexHtml(rows),
        withBody,
      );
    }
    if (path === "/stats") {
      const body = JSON.stringify({ ...this.counters, partBytesHeld: this.partBytesHeld }) + "\n";
      return await writer.send(200, { "Content-Type": "application/json" }, body, withBody);
    }
    const segments = path.split("/");
    if (segments.length !== 3 || segments[1] !== "files" || segments[2] === "") {
      return await writer.send(
        404,
        { "Content-Type": "text/plain" },
        `No page at ${path}\n`,
        withBody,
      );
    }
    let name: string;
    try {
      name = validateFileName(decodeURIComponent(segments[2]!));
    } catch (error) {
      return await writer.send(
        400,
        { "Content-Type": "text/plain" },
        `Bad file name in ${path}: ${(error as Error).message}\n`,
        withBody,
      );
    }
    await this.#fileRoute(name, query.has("metalink"), request, writer, withBody, client);
  }

  /**
   * The entry of `name`. A name typed in another Unicode form (NFD from a
   * Mac's clipboard, say) finds the file stored in NFC, as `fts fetch` does;
   * a name stored before that rule is tried as is.
   */
  #entry(name: string): Promise<FileEntry> {
    return this.#files.entry(name).catch((error) => {
      const nfc = normalizeFileName(name);
      if (!(error instanceof FileNotFoundError) || nfc === name) throw error;
      return this.#files.entry(nfc);
    });
  }

  /**
   * `/files/NAME?metalink` is NAME's Metalink document; `/files/NAME.meta4`
   * is the file of that name when the cluster holds one, else NAME's
   * Metalink document.
   */
  async #fileRoute(
    name: string,
    metalink: boolean,
    request: HttpRequest,
    writer: ResponseWriter,
    withBody: boolean,
    client: string,
  ): Promise<void> {
    try {
      let entry: FileEntry | undefined;
      if (!metalink && name.endsWith(".meta4") && name.length > ".meta4".length) {
        entry = await this.#files.stored(name);
        if (entry === undefined) {
          metalink = true;
          name = name.slice(0, -".meta4".length);
        }
      }
      entry ??= await this.#entry(name);
      if (metalink) {
        const urls = [this.#selfUrl(request), ...(await this.#options.source.gateways())];
        return await writer.send(
          200,
          // Not the file's validators: this is another representation. Its first
          // URL is the Host the client named, so a cache keeps one per Host.
          { "Content-Type": METALINK_MEDIA_TYPE, "Vary": "Host" },
          metalinkDocument(entry, [...new Set(urls)]),
          withBody,
        );
      }
      await serveFile(request, entry, writer, {
        reader: this.#reader,
        budget: this.#budget.share(client),
        partsInFlight: this.#options.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT,
        counters: this.counters,
        log: this.#log,
      });
    } catch (error) {
      if (error instanceof FileNotFoundError) {
        return await writer.send(
          404,
          { "Content-Type": "text/html; charset=utf-8" },
          notFoundHtml(error.fileName, error.nearest),
          withBody,
        );
      }
      if (error instanceof FetchError && !writer.headSent) {
        return await _unavailable(writer, error, withBody);
      }
      throw error;
    }
  }

  /** The base URL the client used (its Host header), else the listening address. */
  #selfUrl(request: HttpRequest): string {
    if (this.#options.publicUrl !== undefined) return this.url;
    const host = request.headers.get("host");
    if (
      host === undefined ||
      !/^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host)
    ) {
      return this.url;
    }
    return `${this.#options.tls ? "https" : "http"}://${host}`;
  }

  #onPartEvent(event: PartReadEvent): void {
    if (event.type === "failover") {
      this.counters.failovers++;
      this.#log(
        `failover: part ${event.part} from instance ${event.from} at byte ${event.at}: ${event.reason}`,
      );
    } else if (event.type === "mismatch") {
      this.counters.digestMismatches++;
      this.#log(
        `digest mismatch: part ${event.part} from instance ${
          event.replicas.join(", ")
        }; reported, read again elsewhere`,
      );
    }
  }
}

/** The path and query of a request target (origin form, or absolute form from a proxy). */
function _splitTarget(target: string): { path: string; query: URLSearchParams } {
  let rest = target;
  const absolute = /^https?:\/\/[^/]*/i.exec(rest);
  if (absolute) rest = rest.slice(absolute[0].length) || "/";
  const q = rest.indexOf("?");
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = new URLSearchParams(q < 0 ? "" : rest.slice(q + 1));
  return { path, query };
}

/** 503 for a request no instance could answer (the cluster is down, or too little of it is up). */
async function _unavailable(writer: ResponseWriter, error: FetchError, withBody: boolean) {
  await writer.send(
    503,
    { "Content-Type": "text/plain", "Retry-After": 5 },
    `${error.message}\n`,
    withBody,
  );
}
