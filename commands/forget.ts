import {
  boolFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  parseFlags,
} from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { plural } from "../lib/base/units.ts";

export const USAGE = "fts forget ADDR[:PORT]... --etcd URLS [--cluster NAME] [--json]";

export const EXAMPLE = [
  "fts forget 10.0.0.3 --etcd http://10.0.0.1:2379        # every instance of a host gone for good",
  "fts forget 10.0.0.3:9004 --etcd http://10.0.0.1:2379   # one instance",
].join("\n");

export async function run(args: string[]): Promise<number> {
  // --data, as commands acting on a cluster take it: a single-host cluster has nothing to forget.
  const flags = parseFlags(args, {
    json: { type: "boolean" },
    data: { type: "string" },
    ...ETCD_FLAGS,
  });
  const selectors = expectPositionals(flags, 1, Infinity, USAGE);
  const etcd = etcdTarget(flags);
  if (!etcd) {
    throw new UsageError(
      "only a cluster in etcd has members to forget: give --etcd URLS (or FTS_ETCD); " +
        "a single-host cluster's instances are its --servers",
    );
  }
  const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
  const { forgetMembers } = await import("../lib/ops/forget.ts");
  const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
  try {
    await cluster.requireSettings();
    const { forgotten, cameBack } = await forgetMembers(cluster, selectors);
    if (boolFlag(flags, "json")) {
      console.log(JSON.stringify({ ok: cameBack.length === 0, forgotten, cameBack }));
    } else {
      console.log(
        `forgot ${plural(forgotten.length, "instance")}: ${forgotten.join(", ") || "none"}`,
      );
      if (cameBack.length > 0) {
        console.error(
          `fts forget: ${cameBack.join(", ")} came back while being forgotten: still members`,
        );
      }
    }
    return cameBack.length === 0 ? 0 : 1;
  } finally {
    cluster.close();
  }
}
