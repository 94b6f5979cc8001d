import {
  boolFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  parseFlags,
  stringFlag,
} from "../lib/cli/flags.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { migrate } from "../lib/ops/migrate.ts";
import { formatBytes, plural } from "../lib/base/units.ts";

export const USAGE = "fts migrate --data DIR --etcd URLS --host ADDR [--cluster NAME] [--merge]";

export const EXAMPLE = [
  "fts migrate --data ./fts-data --etcd http://10.0.0.1:2379 --host 10.0.0.2",
].join("\n");

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    host: { type: "string" },
    merge: { type: "boolean" },
    ...ETCD_FLAGS,
  });
  expectPositionals(flags, 0, 0, USAGE);
  const etcd = etcdTarget(flags, { dataIsSource: true });
  if (!etcd) throw new UsageError(`Missing --etcd URLS; usage: ${USAGE}`);
  const host = stringFlag(flags, "host");
  if (host === undefined) {
    throw new UsageError("Missing --host ADDR: the address other hosts reach this host on");
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const report = await migrate({
    dir,
    endpoints: etcd.endpoints,
    cluster: etcd.cluster,
    host,
    merge: boolFlag(flags, "merge"),
  });
  const { config } = report;
  const first = report.instances[0] ?? "";
  const where = `cluster "${etcd.cluster}" in etcd at ${etcd.endpoints.join(",")}`;
  if (report.finishedBefore) {
    console.log(`fts migrate: ${dir} was migrated to ${where} before: nothing left to move`);
  } else {
    console.log(
      `fts migrate: moved ${plural(report.files, "file")} (${formatBytes(report.bytes)}, ` +
        `${plural(report.parts, "part")}, ${
          plural(report.copies, "copy", "copies")
        }) from ${dir} to ${where}` +
        (report.alreadyThere > 0 ? ` (${report.alreadyThere} were there from an earlier run)` : ""),
    );
  }
  console.log(
    `fts migrate: ${report.instances.length} instances recorded as ${first}..${
      report.instances.at(-1) ?? ""
    } (R=${report.replicas}, part size ${
      formatBytes(report.partSize)
    }); their parts stay in ${dir}/instances`,
  );
  for (const path of report.movedAside) {
    console.log(`fts migrate: ${path}: the old manifest, kept but no longer used`);
  }
  if (report.otherOperator) {
    console.log(
      `fts migrate: the cluster's operator key is another host's: files preloaded here now ` +
        `belong to that operator`,
    );
  }
  console.log("next, on this host:");
  console.log(
    `  fts cluster --etcd ${etcd.endpoints.join(",")} --cluster ${etcd.cluster} --host ${host} ` +
      `--servers ${config.servers} --base-port ${config.basePort} --data ${dir}`,
  );
  return 0;
}
