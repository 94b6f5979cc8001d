/**
 * What `fts rm` and `fts mv` make of a NOT_FOUND that came after a lost reply
 * (AfterLostReplyError): the lost attempt may have made the change, and the
 * retry then finds the old name gone. Each command looks the name up before
 * sending, so that "removed by the lost attempt" and "never there" differ.
 * Publish needs none of this: the server answers a repeated publish of the
 * same content by the same owner with `unchanged`.
 */
import { ProtocolError } from "../wire/errors.ts";
import { FetchError } from "./fetch_error.ts";
import { locateFile } from "./locate.ts";
import { type FileEntry } from "../state/manifest.ts";
import { AfterLostReplyError, type LostReply } from "./signed_client.ts";

/** A name's entry, "absent" when a server said there is no such file, undefined when none could say. */
export type Lookup = FileEntry | "absent" | undefined;

/** Asks the servers for `name`'s entry; never throws (the signed request that follows decides). */
export async function lookupEntry(servers: readonly string[], name: string): Promise<Lookup> {
  try {
    return (await locateFile(name, servers)).entry;
  } catch (error) {
    const notFound = error instanceof FetchError && error.cause instanceof ProtocolError &&
      error.cause.code === "NOT_FOUND";
    return notFound ? "absent" : undefined;
  }
}

/**
 * What a delete or rename of a name looked up as `before` is signed for: the
 * entry's content id; for a name found absent, an id no content has (the
 * server then says NOT_FOUND, or, should the name have appeared since, that
 * it holds other content); none when no server could say (bindRequest then
 * looks it up). Spread into the request.
 */
export function signedContent(before: Lookup): { contentId?: string } {
  if (before === undefined) return {};
  return { contentId: before === "absent" ? NO_CONTENT_ID : before.contentId };
}

/** A content id no file has: all zeros is no SHA-256 anyone can aim at. */
export const NO_CONTENT_ID = "0".repeat(64);

/** The lost replies behind `error` when it is a NOT_FOUND after a lost reply, else undefined. */
export function notFoundAfterLostReply(error: unknown): readonly LostReply[] | undefined {
  return error instanceof AfterLostReplyError && error.code === "NOT_FOUND"
    ? error.lostReplies
    : undefined;
}

/** "the reply from HOST:PORT was lost (why)", for the message that reports the outcome. */
export function describeLostReply(lost: readonly LostReply[]): string {
  const first = lost[0];
  if (!first) return "no reply was lost";
  return `the reply from ${first.address} was lost (${first.reason})`;
}

/**
 * True when `after` is the file `before` was, under another name: same owner,
 * content and creation time (rename keeps all three; an upload sets a new time).
 */
export function isRenamedEntry(before: FileEntry, after: FileEntry): boolean {
  return after.owner === before.owner && after.contentId === before.contentId &&
    after.created === before.created;
}

/**
 * After a rename's NOT_FOUND that followed a lost reply: undefined when `to`
 * now is the file `from` was before (`before`), so the lost attempt renamed
 * it; otherwise why the rename cannot be taken as done.
 */
export async function unconfirmedRename(
  servers: readonly string[],
  before: FileEntry | undefined,
  to: string,
): Promise<string | undefined> {
  if (before === undefined) return "the old name could not be looked up before sending";
  const after = await lookupEntry(servers, to);
  if (after === "absent") return `no file named ${JSON.stringify(to)} exists either`;
  if (after === undefined) return `${JSON.stringify(to)} could not be looked up`;
  if (after.owner !== before.owner) {
    return `${JSON.stringify(to)} belongs to ${after.owner}, not to the owner of the old file`;
  }
  if (!isRenamedEntry(before, after)) {
    return `${JSON.stringify(to)} is another file (other content or creation time)`;
  }
  return undefined;
}
