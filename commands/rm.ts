import { expectPositionals, parseFlags } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { validateFileName } from "../lib/manifest.ts";
import { sendSigned, SIGNING_FLAGS, signingContext } from "../lib/signed_client.ts";

export const USAGE =
  "fts rm NAME [--identity FILE | --operator] [--server HOST:PORT]... [--data DIR]";

export const EXAMPLE = [
  "fts rm movie.mkv",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, SIGNING_FLAGS);
  const [name = ""] = expectPositionals(flags, 1, 1, USAGE);
  try {
    validateFileName(name);
  } catch (cause) {
    throw new UsageError((cause as Error).message, { cause });
  }
  const { servers, identity } = await signingContext(flags);
  const reply = await sendSigned(servers, identity, { op: "file.delete", name });
  console.log(
    `removed ${name}: ${reply.partsFreed ?? 0} parts no other file uses were freed ` +
      `(${reply.copiesFreed ?? 0} stored copies)`,
  );
  return 0;
}
