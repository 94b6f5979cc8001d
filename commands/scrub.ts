import { etcdTarget, expectPositionals, parseFlags, stringFlag } from "../lib/cli/flags.ts";
import { REPAIR_FLAGS, repairFlags } from "../lib/cli/repair_flags.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { repairRunner } from "../lib/ops/repair_runner.ts";
import { instanceTls } from "../lib/client/servers.ts";
import { repairCommandOptions, runRepairCommand } from "../lib/ui/repair_command.ts";

export const USAGE =
  "fts scrub [--hash-rate 256MiB] [--limit-rate 64MiB] [--unused-after 24h] [--tls-ca FILE] [--quiet] [--json] [--data DIR | --etcd URLS [--cluster NAME]]\n" +
  "  --hash-rate   bytes per second re-hashed on the instances (0: no limit)\n" +
  "  --limit-rate  bytes per second copied to repair corrupt copies (0: no limit)\n" +
  "  --unused-after  delete parts no file uses (left by uploads that never finished) once stored this long (0: keep them)";

export const EXAMPLE = [
  "fts scrub --hash-rate 128MiB   # re-hash every stored copy, at most 128 MiB/s",
].join("\n");

/**
 * The scrub is a repair that re-hashes every stored copy first: each live
 * instance checks its parts, quarantines any that rotted, and the repair then
 * copies those parts back from good replicas.
 */
export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, REPAIR_FLAGS);
  expectPositionals(flags, 0, 0, USAGE);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  // On the cluster's host, a TLS cluster's CA without --tls-ca (into FTS_TLS_CA, which repairFlags reads).
  await instanceTls(dir, [], etcdTarget(flags), stringFlag(flags, "tls-ca"));
  const options = repairCommandOptions(await repairFlags(flags));
  return await runRepairCommand("scrub", await repairRunner(dir, etcdTarget(flags)), {
    verifyAll: true,
    ...options,
  });
}
