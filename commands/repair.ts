import {
  boolFlag,
  etcdTarget,
  expectPositionals,
  parseFlags,
  stringFlag,
} from "../lib/cli/flags.ts";
import { REPAIR_FLAGS, repairFlags } from "../lib/cli/repair_flags.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { repairRunner } from "../lib/ops/repair_runner.ts";
import { instanceTls } from "../lib/client/servers.ts";
import { repairCommandOptions, runRepairCommand } from "../lib/ui/repair_command.ts";

export const USAGE =
  "fts repair [--dry-run] [--verify] [--new-cluster] [--limit-rate 64MiB] [--hash-rate 256MiB] [--unused-after 24h] [--tls-ca FILE] [--quiet] [--json] [--data DIR | --etcd URLS [--cluster NAME]]\n" +
  "  --verify      re-hash every copy, not only those of parts that need work\n" +
  "  --new-cluster  the data directory is a new cluster: start an empty manifest where none is\n" +
  "                 (without it, stored parts and no manifest.json is refused as a lost manifest)\n" +
  "  --limit-rate  bytes per second copied between instances, over all copies (0: no limit)\n" +
  "  --hash-rate   bytes per second re-hashed on the instances (0: no limit)\n" +
  "  --unused-after  delete parts no file uses (left by uploads that never finished) once stored this long (0: keep them)";

export const EXAMPLE = [
  "fts repair --dry-run   # what it would copy and drop",
  "fts repair             # bring every part back to R copies",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    ...REPAIR_FLAGS,
    "dry-run": { type: "boolean" },
    verify: { type: "boolean" },
    "new-cluster": { type: "boolean" },
  });
  expectPositionals(flags, 0, 0, USAGE);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  // On the cluster's host, a TLS cluster's CA without --tls-ca (into FTS_TLS_CA, which repairFlags reads).
  await instanceTls(dir, [], etcdTarget(flags), stringFlag(flags, "tls-ca"));
  const options = repairCommandOptions(await repairFlags(flags));
  return await runRepairCommand("repair", await repairRunner(dir, etcdTarget(flags)), {
    dryRun: boolFlag(flags, "dry-run"),
    verifyAll: boolFlag(flags, "verify"),
    newCluster: boolFlag(flags, "new-cluster"),
    ...options,
  });
}
