import { expectPositionals, parseFlags, SIGNING_FLAGS, signingFlags } from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import {
  describeLostReply,
  lookupEntry,
  notFoundAfterLostReply,
  signedContent,
  unconfirmedRename,
} from "../lib/client/lost_reply.ts";
import { normalizeFileName, validateFileName, validateNewFileName } from "../lib/state/manifest.ts";
import { sendSigned, signingContext } from "../lib/client/signed_client.ts";
import { printable } from "../lib/base/printable.ts";

export const USAGE =
  "fts mv OLD NEW [--identity FILE | --operator] [--server HOST:PORT]... [--tls-ca FILE] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts mv movie.mkv film.mkv",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, SIGNING_FLAGS);
  const [typedFrom = "", typedTo = ""] = expectPositionals(flags, 2, 2, USAGE);
  const nfcFrom = normalizeFileName(typedFrom);
  const to = normalizeFileName(typedTo);
  for (const [what, name] of [["Old name", nfcFrom], ["New name", to]] as const) {
    try {
      // Only the new name must meet the rules for new names: an older one may be renamed away.
      if (what === "New name") validateNewFileName(name);
      else validateFileName(name);
    } catch (cause) {
      throw new UsageError(`${what}: ${(cause as Error).message}`, { cause });
    }
  }
  const { servers, identity } = await signingContext({
    ...signingFlags(flags),
    createIdentity: false,
  });
  // Should a reply get lost, NEW must then be this very file for the rename to count as done.
  const before = await lookupEntry(servers, nfcFrom);
  // A name stored before names were normalised is found from its NFC form: renamed as stored.
  const from = typeof before === "object" ? before.name : nfcFrom;
  try {
    // Only what was looked up: a file put there since is not the one meant.
    await sendSigned(servers, identity, {
      op: "file.rename",
      name: from,
      to,
      ...signedContent(before),
    });
  } catch (error) {
    const lost = notFoundAfterLostReply(error);
    if (lost === undefined || before === "absent") throw error;
    const why = await unconfirmedRename(servers, before, to);
    if (why !== undefined) {
      throw new Error(
        `${(error as Error).message}; ${
          describeLostReply(lost)
        }, so that attempt may have renamed it, but ${why}`,
        { cause: error },
      );
    }
    console.log(
      `renamed ${printable(from)} -> ${printable(to)}: ${
        describeLostReply(lost)
      }, and a retry found ${printable(to)} holding what ${printable(from)} held`,
    );
    return 0;
  }
  console.log(`renamed ${printable(from)} -> ${printable(to)}`);
  return 0;
}
