/**
 * The cluster's file list, asked of the servers in turn until one answers:
 * each server sends it page by page (Peer.listFiles), so no instance builds a
 * reply of the whole manifest. Used by `fts ls` and by a fetch of many files.
 */
import { preferredTlsError, type TlsClientOptions, TlsError } from "../wire/tls.ts";
import { type FileSummary, Peer } from "./peer.ts";

/** How long listing waits to connect to a server before trying the next. */
export const LIST_CONNECT_TIMEOUT_MS = 1_000;
/** How long listing waits for the next byte of a page. */
export const LIST_STALL_TIMEOUT_MS = 3_000;

/** Every file the cluster holds, from the first of `servers` that answers. */
export async function listFromServers(
  servers: readonly string[],
  tls: TlsClientOptions | undefined,
): Promise<FileSummary[]> {
  const reasons: string[] = [];
  const tlsErrors: TlsError[] = [];
  const badAnswers: string[] = [];
  for (const address of servers) {
    let peer: Peer | undefined;
    try {
      peer = await Peer.connect(address, {
        connectTimeoutMs: LIST_CONNECT_TIMEOUT_MS,
        stallTimeoutMs: LIST_STALL_TIMEOUT_MS,
        tls,
      });
      return await peer.listFiles();
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
