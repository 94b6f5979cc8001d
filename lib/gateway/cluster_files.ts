/**
 * The gateway's view of the cluster's files, asked over the wire from the
 * instances its source names (gateway_source.ts):
 *
 * 1. A file's entry comes from locateFile(); it is kept ENTRY_CACHE_MS, and
 *    concurrent lookups of one name share one request, so that a download
 *    manager opening many connections at once costs one lookup. A name the
 *    cluster does not hold is kept as long, and the file list its answer
 *    draws on (the nearest name) too: requests for missing names cost one
 *    list per ENTRY_CACHE_MS, however many files and requests. The index
 *    asks for the list afresh.
 * 2. Every entry seen teaches the instance addresses (the part reader's
 *    `addressOf`), with locate.ts's rule for loopback addresses.
 * 3. The file list comes from the first instance that answers; each file's
 *    health (every copy on a live instance, some, or a part with none) comes
 *    from its entry and a connect probe of each instance, kept
 *    LIVENESS_CACHE_MS.
 */
import { closestMatch } from "../base/closest_match.ts";
import { deadline } from "../base/deadline.ts";
import { shuffled } from "../base/shuffled.ts";
import { FetchError } from "../client/fetch_error.ts";
import { addressResolver, locateFile } from "../client/locate.ts";
import { type ConnectOptions, type FileSummary, parseAddress, Peer } from "../client/peer.ts";
import type { FileEntry } from "../state/manifest.ts";
import { ProtocolError } from "../wire/errors.ts";
import type { GatewaySource } from "./gateway_source.ts";

/** How long a located entry is reused before the instances are asked again. */
export const ENTRY_CACHE_MS = 2_000;
/** How long an instance's probed liveness is reused for the index's health column. */
export const LIVENESS_CACHE_MS = 3_000;
/** How long a liveness probe may take to connect. */
export const LIVENESS_PROBE_TIMEOUT_MS = 500;
/** Files whose health the index works out; past it, health shows as unknown. */
export const MAX_INDEX_HEALTH_FILES = 500;

export type FileHealth = "healthy" | "degraded" | "unavailable" | "unknown";

export interface FileRow extends FileSummary {
  health: FileHealth;
  contentId: string | undefined;
}

/** No file of that name: `nearest` is the closest name the cluster holds, if any. */
export class FileNotFoundError extends Error {
  constructor(
    readonly fileName: string,
    readonly nearest: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `No file named ${JSON.stringify(fileName)} in the cluster${
        nearest !== undefined ? `; did you mean ${JSON.stringify(nearest)}?` : ""
      }`,
      options,
    );
    this.name = "FileNotFoundError";
  }
}

export class ClusterFiles {
  readonly #source: GatewaySource;
  readonly #connect: ConnectOptions;
  readonly #entries = new Map<string, { at: number; entry: Promise<FileEntry> }>();
  readonly #addresses = new Map<string, string>();
  readonly #liveness = new Map<string, { at: number; up: Promise<boolean> }>();
  #list: { at: number; files: Promise<FileSummary[]> } | undefined;

  constructor(source: GatewaySource, connect: ConnectOptions) {
    this.#source = source;
    this.#connect = connect;
  }

  /** An instance id to the address learnt from the entries seen so far. */
  addressOf = (id: string): string => this.#addresses.get(id) ?? `127.0.0.1:${id}`;

  /** The entry of `name`; FileNotFoundError when the cluster has none, FetchError when unreachable. */
  entry(name: string): Promise<FileEntry> {
    const now = Date.now();
    const cached = this.#entries.get(name);
    if (cached && now - cached.at < ENTRY_CACHE_MS) return cached.entry;
    const entry = this.#locate(name);
    this.#entries.set(name, { at: now, entry });
    // A lookup that failed otherwise than "no such file" is not kept: the next request asks again.
    entry.catch((error) => {
      if (!(error instanceof FileNotFoundError)) this.#entries.delete(name);
    });
    return entry;
  }

  /**
   * The entry of a file named exactly `name`, or undefined: no list of the
   * files is asked for (no nearest name, no other Unicode form).
   */
  async stored(name: string): Promise<FileEntry | undefined> {
    const cached = this.#entries.get(name);
    if (cached && Date.now() - cached.at < ENTRY_CACHE_MS) {
      return await cached.entry.catch((error) => {
        if (error instanceof FileNotFoundError) return undefined;
        throw error;
      });
    }
    try {
      return await this.#lookUp(name, () => Promise.resolve([]));
    } catch (error) {
      if (error instanceof FetchError && _isNotFound(error.cause)) return undefined;
      throw error;
    }
  }

  async #locate(name: string): Promise<FileEntry> {
    const names = async () => (await this.list().catch(() => [])).map((f) => f.name);
    try {
      return await this.#lookUp(name, names);
    } catch (error) {
      if (error instanceof FetchError && _isNotFound(error.cause)) {
        throw new FileNotFoundError(name, closestMatch(name, await names()), { cause: error });
      }
      throw error;
    }
  }

  async #lookUp(name: string, names: () => Promise<readonly string[]>): Promise<FileEntry> {
    const servers = await this.#source.servers();
    const info = await locateFile(name, servers, { ...this.#connect, names });
    const resolve = addressResolver(info);
    for (const id of Object.keys(info.instances)) this.#addresses.set(id, resolve(id));
    for (const part of info.entry.parts) {
      for (const id of part.replicas) {
        if (!this.#addresses.has(id)) this.#addresses.set(id, resolve(id));
      }
    }
    return info.entry;
  }

  /** The file list, from the first instance that answers; kept ENTRY_CACHE_MS (for missing names). */
  list(): Promise<FileSummary[]> {
    const now = Date.now();
    if (this.#list && now - this.#list.at < ENTRY_CACHE_MS) return this.#list.files;
    const files = this.#listNow();
    const kept = { at: now, files };
    this.#list = kept;
    files.catch(() => {
      if (this.#list === kept) this.#list = undefined;
    });
    return files;
  }

  async #listNow(): Promise<FileSummary[]> {
    const reasons: string[] = [];
    for (const address of shuffled(await this.#source.servers())) {
      let peer: Peer | undefined;
      try {
        peer = await Peer.connect(address, this.#connect);
        return (await peer.listFiles()).sort((a, b) => a.name.localeCompare(b.name));
      } catch (error) {
        reasons.push(`${address}: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        peer?.close();
      }
    }
    throw new FetchError(`Cannot list the files: no instance answered`, [], {
      cause: new Error(reasons.slice(0, 3).join("; ")),
    });
  }

  /** The file list, asked now, with each file's health and content id (for the index). */
  async rows(): Promise<FileRow[]> {
    const files = await this.#listNow();
    return await Promise.all(files.map(async (file, i): Promise<FileRow> => {
      if (i >= MAX_INDEX_HEALTH_FILES) return { ...file, health: "unknown", contentId: undefined };
      try {
        const entry = await this.entry(file.name);
        return { ...file, health: await this.#health(entry), contentId: entry.contentId };
      } catch {
        return { ...file, health: "unknown", contentId: undefined };
      }
    }));
  }

  async #health(entry: FileEntry): Promise<FileHealth> {
    let degraded = false;
    for (const part of entry.parts) {
      const up = await Promise.all(part.replicas.map((id) => this.#isUp(this.addressOf(id))));
      if (!up.includes(true)) return "unavailable";
      if (up.includes(false)) degraded = true;
    }
    return degraded ? "degraded" : "healthy";
  }

  #isUp(address: string): Promise<boolean> {
    const now = Date.now();
    const cached = this.#liveness.get(address);
    if (cached && now - cached.at < LIVENESS_CACHE_MS) return cached.up;
    const up = _accepts(address);
    this.#liveness.set(address, { at: now, up });
    return up;
  }
}

function _isNotFound(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "NOT_FOUND";
}

/** Whether something accepts TCP connections at `address` within the probe timeout. */
async function _accepts(address: string): Promise<boolean> {
  const { hostname, port } = parseAddress(address);
  const connecting = Deno.connect({ hostname, port });
  let cancel = () => {};
  const timeout = new Promise<false>((resolve) => {
    cancel = deadline(LIVENESS_PROBE_TIMEOUT_MS, () => resolve(false));
  });
  try {
    const conn = await Promise.race([connecting, timeout]);
    if (conn === false) {
      connecting.then((late) => late.close(), () => {});
      return false;
    }
    conn.close();
    return true;
  } catch {
    return false;
  } finally {
    cancel();
  }
}
