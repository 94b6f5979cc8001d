/**
 * The cluster's file list, asked of the servers in turn until one answers:
 * each server sends it page by page (Peer.filePages), so no instance builds a
 * reply of the whole manifest. Used by `fts ls` (as the pages arrive) and by
 * a fetch of many files.
 */
import { preferredTlsError, type TlsClientOptions, TlsError } from "../wire/tls.ts";
import { type FileSummary, type ListPosition, Peer } from "./peer.ts";

/** How long listing waits to connect to a server before trying the next. */
export const LIST_CONNECT_TIMEOUT_MS = 1_000;
/** How long listing waits for the next byte of a page. */
export const LIST_STALL_TIMEOUT_MS = 3_000;

/** Every file the cluster holds, from the first of `servers` that answers. */
export async function listFromServers(
  servers: readonly string[],
  tls: TlsClientOptions | undefined,
): Promise<FileSummary[]> {
  const files: FileSummary[] = [];
  for await (const page of listedFilePages(servers, tls)) files.push(...page);
  return files;
}

/**
 * The cluster's files in pages as they arrive, in the servers' name order: a
 * listing of any size starts at once and holds one page. A server that fails
 * part way is left for the next, which goes on after the last page given.
 */
export async function* listedFilePages(
  servers: readonly string[],
  tls: TlsClientOptions | undefined,
): AsyncGenerator<FileSummary[]> {
  const reasons: string[] = [];
  const tlsErrors: TlsError[] = [];
  const badAnswers: string[] = [];
  let from: ListPosition = {};
  for (const address of servers) {
    let peer: Peer | undefined;
    try {
      peer = await Peer.connect(address, {
        connectTimeoutMs: LIST_CONNECT_TIMEOUT_MS,
        stallTimeoutMs: LIST_STALL_TIMEOUT_MS,
        tls,
      });
      for await (const page of peer.filePages(from)) {
        from = page.next;
        yield page.files;
      }
      return;
    } catch (error) {
      if (error instanceof TlsError) tlsErrors.push(error);
      reasons.push(`${address}: ${(error as Error).message}`);
      // It answered hello: it is up, but what it sent was unusable.
      if (peer !== undefined) badAnswers.push((error as Error).message);
    } finally {
      peer?.close();
    }
  }
  const tlsError = preferredTlsError(tlsErrors, servers.length);
  if (tlsError) throw tlsError;
  if (from.after !== undefined) {
    throw new Error(
      `The file list broke off after ${
        JSON.stringify(from.after)
      } and no server went on (tried ${servers.length}); the last said: ${reasons.at(-1)}`,
      { cause: new Error(reasons.slice(0, 3).join("; ")) },
    );
  }
  if (badAnswers.length === servers.length) {
    throw new Error(
      `No server gave a usable file list (asked ${servers.length}): ${badAnswers[0]}`,
      { cause: new Error(reasons.slice(0, 3).join("; ")) },
    );
  }
  throw new Error(`Cannot reach any server (tried ${servers.length}); is the cluster running?`, {
    cause: new Error(reasons.slice(0, 3).join("; ")),
  });
}
