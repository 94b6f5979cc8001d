/**
 * Locating a file: ask the servers, in random order, for its entry, and map
 * the instance ids the entry names to addresses this client can reach. A
 * missing name gets a message a person can act on (the nearest name the
 * cluster holds, or how to list or add files).
 */
import { closestMatch } from "../base/closest_match.ts";
import { shuffled } from "../base/shuffled.ts";
import { ProtocolError } from "../wire/errors.ts";
import { preferredTlsError, TlsError } from "../wire/tls.ts";
import type { FileEntry } from "../state/manifest.ts";
import { FetchError } from "./fetch_error.ts";
import { dropResumeFiles } from "./helper_paths.ts";
import { type ConnectOptions, type FileInfo, parseAddress, Peer } from "./peer.ts";

/** How to connect, and what to tell a person when no server answers. */
export interface LocateOptions extends ConnectOptions {
  /** The command that starts the cluster asked (say, `fts cluster --data DIR`). */
  startCommand?: string | undefined;
  /**
   * The cluster's file names, for a missing name's message and its other
   * Unicode form; by default listed from the server that said "not found".
   */
  names?: () => Promise<readonly string[]>;
}

/** Asks the given servers, in random order, for the file's entry. */
export async function locateFile(
  name: string,
  servers: readonly string[],
  options: LocateOptions = {},
): Promise<FileInfo & { from: string }> {
  if (servers.length === 0) throw new TypeError("No servers to ask for the file");
  const order = shuffled(servers);
  const reasons: string[] = [];
  const tlsErrors: TlsError[] = [];
  /** Failures of servers that did answer hello: reachable, but their answer was unusable. */
  const badAnswers: string[] = [];
  /** Servers that answered BUSY: up, with every connection taken. */
  let busy = 0;
  for (const address of order) {
    let peer: Peer | undefined;
    try {
      peer = await Peer.connect(address, options);
      const info = await peer.getFile(name);
      if (info.entry.name !== name) {
        throw new ProtocolError("BAD_FRAME", `${address} sent the entry of another file`);
      }
      return { ...info, from: address };
    } catch (error) {
      if (error instanceof ProtocolError && error.code === "NOT_FOUND") {
        // The names the cluster does hold make the message one a person can act on.
        const names = await (options.names?.() ??
          peer?.listFiles().then((files) => files.map((f) => f.name)))?.catch(() => []);
        // An entry stored before names were normalised may be in another form
        // (NFD, as macOS spells file names): the same name to the eye.
        // Only from the NFC form, so that this is tried once.
        const stored = name === name.normalize("NFC")
          ? names?.find((n) => n !== name && n.normalize("NFC") === name)
          : undefined;
        if (stored !== undefined) return await locateFile(stored, servers, options);
        throw new FetchError(notFoundMessage(name, names ?? []), [], { cause: error });
      }
      if (error instanceof TlsError) tlsErrors.push(error);
      if (error instanceof ProtocolError && error.code === "BUSY") busy++;
      reasons.push(`${address}: ${error instanceof Error ? error.message : String(error)}`);
      if (peer !== undefined) badAnswers.push(reasons.at(-1)!);
    } finally {
      peer?.close();
    }
  }
  const tlsError = preferredTlsError(tlsErrors, order.length);
  if (tlsError) throw new FetchError(tlsError.message, [], { cause: tlsError });
  if (busy === order.length) {
    throw new FetchError(
      `${
        order.length === 1 ? "The server is" : `All ${order.length} servers are`
      } busy (every connection taken): try again in a moment`,
      [],
      { cause: new Error(reasons.slice(0, 5).join("; ")) },
    );
  }
  if (badAnswers.length === order.length) {
    throw new FetchError(
      `No server gave a usable entry for ${JSON.stringify(name)} (asked ${order.length}): ${
        badAnswers[0]
      }`,
      [],
      { cause: new Error(reasons.slice(0, 5).join("; ")) },
    );
  }
  throw new FetchError(
    `Cannot reach any of the ${order.length} servers (${order[0]}${
      order.length > 1 ? ` and ${order.length - 1} more` : ""
    }): is the cluster up? Start it with "${
      options.startCommand ?? "fts cluster"
    }", or pass --server HOST:PORT of a live instance`,
    [],
    { cause: new Error(reasons.slice(0, 5).join("; ")) },
  );
}

const LOOPBACK = /^(127\.|localhost$|0\.0\.0\.0$|::1?$)/;

/** Maps instance ids to addresses, substituting the host we reached for a loopback one. */
export function addressResolver(info: FileInfo & { from: string }): (id: string) => string {
  const reachedHost = parseAddress(info.from).hostname;
  // What each advertised address came to: a reader asks for every replica of every part.
  const resolved = new Map<string, string>();
  return (id: string) => {
    const advertised = info.instances[id] ?? `${reachedHost}:${id}`;
    let address = resolved.get(advertised);
    if (address === undefined) {
      const { hostname, port } = parseAddress(advertised);
      address = LOOPBACK.test(hostname) && !LOOPBACK.test(reachedHost)
        ? `${reachedHost}:${port}`
        : advertised;
      resolved.set(advertised, address);
    }
    return address;
  };
}

/** "No file named ..." with the nearest name the cluster holds, or how to list or add files. */
export function notFoundMessage(name: string, names: readonly string[]): string {
  const head = `No file named ${JSON.stringify(name)} in the cluster`;
  if (names.length === 0) return `${head}; it holds no files yet (fts preload FILE adds one)`;
  const near = closestMatch(name, names);
  return near !== undefined
    ? `${head}; did you mean ${JSON.stringify(near)}? (fts ls lists the files)`
    : `${head}; run fts ls to see the ${
      names.length === 1 ? "one file" : `${names.length} files`
    } it holds`;
}

/**
 * A part that no replica has any more is what a fetch sees when the owner
 * replaced or removed the file meanwhile (its old parts are freed): the
 * entry is looked up again, and when it changed the error says so, rather
 * than that every replica failed. Any other error is returned as it is. A
 * file gone from the cluster leaves nothing to resume: the partial file and
 * control file of `finalPath`, when given, are removed (unless another fetch
 * holds them).
 */
export async function explainChange(
  entry: FileEntry,
  error: unknown,
  servers: readonly string[],
  options: ConnectOptions,
  finalPath?: string,
): Promise<unknown> {
  if (!(error instanceof FetchError) || error.failedParts.length === 0) return error;
  const name = JSON.stringify(entry.name);
  let now: FileEntry;
  try {
    now = (await locateFile(entry.name, servers, options)).entry;
  } catch (cause) {
    const gone = cause instanceof FetchError && cause.cause instanceof ProtocolError &&
      cause.cause.code === "NOT_FOUND";
    if (!gone) return error;
    const dropped = finalPath !== undefined && dropResumeFiles(finalPath);
    return new FetchError(
      `${name} was removed or renamed while it was being fetched` +
        (dropped ? "; its partial download was removed" : ""),
      error.failedParts,
      { cause: error, changed: "removed" },
    );
  }
  if (now.contentId === entry.contentId) return error;
  return new FetchError(
    `${name} changed while it was being fetched (its owner replaced it); run the same command again to fetch the new content`,
    error.failedParts,
    { cause: error, changed: "replaced" },
  );
}
