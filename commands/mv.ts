import { expectPositionals, parseFlags } from "../lib/cli.ts";
import { UsageError } from "../lib/errors.ts";
import { validateFileName } from "../lib/manifest.ts";
import { sendSigned, SIGNING_FLAGS, signingContext } from "../lib/signed_client.ts";

export const USAGE =
  "fts mv OLD NEW [--identity FILE | --operator] [--server HOST:PORT]... [--data DIR]";

export const EXAMPLE = [
  "fts mv movie.mkv film.mkv",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, SIGNING_FLAGS);
  const [from = "", to = ""] = expectPositionals(flags, 2, 2, USAGE);
  for (const [what, name] of [["Old name", from], ["New name", to]] as const) {
    try {
      validateFileName(name);
    } catch (cause) {
      throw new UsageError(`${what}: ${(cause as Error).message}`, { cause });
    }
  }
  const { servers, identity } = await signingContext(flags);
  await sendSigned(servers, identity, { op: "file.rename", name: from, to });
  console.log(`renamed ${from} -> ${to}`);
  return 0;
}
