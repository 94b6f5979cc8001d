import { expectPositionals, parseFlags, SIGNING_FLAGS, signingFlags } from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import {
  describeLostReply,
  lookupEntry,
  notFoundAfterLostReply,
  signedContent,
} from "../lib/client/lost_reply.ts";
import { normalizeFileName, validateFileName } from "../lib/state/manifest.ts";
import { sendSigned, signingContext } from "../lib/client/signed_client.ts";
import { printable } from "../lib/base/printable.ts";
import { plural } from "../lib/base/units.ts";

export const USAGE =
  "fts rm NAME [--identity FILE | --operator] [--server HOST:PORT]... [--tls-ca FILE] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts rm movie.mkv",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, SIGNING_FLAGS);
  const nfcName = normalizeFileName(expectPositionals(flags, 1, 1, USAGE)[0] ?? "");
  try {
    validateFileName(nfcName);
  } catch (cause) {
    throw new UsageError((cause as Error).message, { cause });
  }
  const signing = signingFlags(flags);
  const { servers, identity } = await signingContext({ ...signing, createIdentity: false });
  // Should a reply get lost, this tells "removed by that attempt" from "never there".
  const before = await lookupEntry(servers, nfcName);
  // A name stored before names were normalised is found from its NFC form: removed as stored.
  const name = typeof before === "object" ? before.name : nfcName;
  let reply;
  try {
    reply = await sendSigned(servers, identity, {
      op: "file.delete",
      name,
      // Only what was looked up: a file put there since is not the one meant.
      ...signedContent(before),
    });
  } catch (error) {
    const lost = notFoundAfterLostReply(error);
    // Success only when the file was seen before: else "gone" may mean "never there".
    if (lost === undefined || before === undefined || before === "absent") throw error;
    console.log(
      `removed ${printable(name)}: ${
        describeLostReply(lost)
      }, and a retry found the file already gone`,
    );
    return 0;
  }
  console.log(
    `removed ${printable(name)}: ${plural(reply.partsFreed ?? 0, "part")} no other file uses ` +
      `${reply.partsFreed === 1 ? "was" : "were"} freed (${
        plural(reply.copiesFreed ?? 0, "stored copy", "stored copies")
      }${
        // The instance that took the delete frees its own host's stores and tells the others.
        signing.etcd
          ? " on the host that took the delete; the other hosts free theirs as they hear of it"
          : ""})`,
  );
  return 0;
}
