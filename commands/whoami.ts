import { boolFlag, expectPositionals, parseFlags, stringFlag } from "../lib/cli/flags.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { identityFromFlags } from "../lib/auth/identity.ts";

export const USAGE = "fts whoami [--identity FILE | --operator] [--data DIR]";

export const EXAMPLE = [
  "fts whoami   # the owner string your uploads get",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    identity: { type: "string" },
    operator: { type: "boolean" },
  });
  expectPositionals(flags, 0, 0, USAGE);
  const identity = await identityFromFlags(
    { identity: stringFlag(flags, "identity"), operator: boolFlag(flags, "operator") },
    resolveDataDir(stringFlag(flags, "data")),
  );
  console.log(identity.owner);
  console.error(`identity file: ${identity.path}${identity.created ? " (created now)" : ""}`);
  return 0;
}
