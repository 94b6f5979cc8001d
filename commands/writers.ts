import {
  boolFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  parseFlags,
  stringFlag,
} from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { requireConfig, resolveDataDir } from "../lib/state/config.ts";
import { type ManifestStore, publishedBytesByOwner } from "../lib/state/manifest_store.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { operatorIdentityPath, readIdentityOwner } from "../lib/auth/identity.ts";
import { type WritersChange, type WritersPolicy } from "../lib/auth/writers_policy.ts";
import { changeWritersFile, readWritersFile } from "../lib/auth/writers_file.ts";
import { formatBytes, parseSize } from "../lib/base/units.ts";
import { OPERATOR_OWNER } from "../lib/state/manifest.ts";

export const USAGE =
  "fts writers [ls | add KEY [--quota SIZE] | rm KEY | open | closed | quota KEY|default SIZE|none] [--json] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts writers                                  # who may store parts, quotas, bytes published",
  "fts writers add ed25519:Q2x... --quota 10GiB # let a key (as fts whoami prints it) store parts",
  "fts writers closed                           # only listed keys and the operator's from now on",
  "fts writers quota default 1GiB               # every key without a quota of its own",
].join("\n");

/** The policy and the manifest of the cluster the flags name, and a way to change the policy. */
interface _Target {
  read(): Promise<WritersPolicy>;
  change(change: WritersChange): Promise<WritersPolicy>;
  operatorKey(): Promise<string | undefined>;
  manifest: ManifestStore;
  close(): void;
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    quota: { type: "string" },
    json: { type: "boolean" },
    ...ETCD_FLAGS,
  });
  const [verb = "ls", ...rest] = expectPositionals(flags, 0, 3, USAGE);
  const change = _change(verb, rest, stringFlag(flags, "quota"));
  const target = await _target(flags);
  try {
    let policy: WritersPolicy;
    try {
      policy = change ? await target.change(change) : await target.read();
    } catch (cause) {
      if (cause instanceof RangeError || cause instanceof TypeError) {
        throw new UsageError(cause.message, { cause });
      }
      throw cause;
    }
    const operator = await target.operatorKey();
    const published = await publishedBytesByOwner(target.manifest);
    if (boolFlag(flags, "json")) {
      console.log(
        JSON.stringify(
          { ...policy, operatorKey: operator, published: Object.fromEntries(published) },
          null,
          2,
        ),
      );
    } else {
      console.log(_format(policy, operator, published));
    }
    return 0;
  } finally {
    target.close();
  }
}

function _change(
  verb: string,
  rest: string[],
  quota: string | undefined,
): WritersChange | undefined {
  const want = (count: number, form: string) => {
    if (rest.length !== count) throw new UsageError(`Usage: fts writers ${form}`);
  };
  if (quota !== undefined && verb !== "add") {
    throw new UsageError("--quota goes with `fts writers add KEY`; else use `fts writers quota`");
  }
  switch (verb) {
    case "ls":
      want(0, "ls");
      return undefined;
    case "open":
    case "closed":
      want(0, verb);
      return { type: verb };
    case "add":
      want(1, "add KEY [--quota SIZE]");
      return {
        type: "add",
        key: rest[0]!,
        quotaBytes: quota === undefined ? undefined : _size(quota),
      };
    case "rm":
      want(1, "rm KEY");
      return { type: "remove", key: rest[0]! };
    case "quota": {
      want(2, "quota KEY|default SIZE|none");
      const [who, size] = rest as [string, string];
      return {
        type: "quota",
        key: who === "default" ? undefined : who,
        quotaBytes: size === "none" ? undefined : _size(size),
      };
    }
    default:
      throw new UsageError(
        `Unknown action ${JSON.stringify(verb)} (ls, add, rm, open, closed, quota)`,
      );
  }
}

function _size(text: string): number {
  try {
    return parseSize(text);
  } catch (cause) {
    throw new UsageError(`Quota: ${(cause as Error).message}`, { cause });
  }
}

async function _target(flags: ReturnType<typeof parseFlags>): Promise<_Target> {
  const etcd = etcdTarget(flags);
  if (etcd) {
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const { changeEtcdWriters, readEtcdWriters } = await import("../lib/etcd/etcd_writers.ts");
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    try {
      await cluster.requireSettings();
    } catch (error) {
      cluster.close();
      throw error;
    }
    return {
      read: () => readEtcdWriters(cluster.etcd, cluster.keys),
      change: (change) => changeEtcdWriters(cluster.etcd, cluster.keys, change),
      operatorKey: async () => (await cluster.settings())?.operatorKey,
      manifest: cluster.manifest,
      close: () => cluster.close(),
    };
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  await requireConfig(dir);
  return {
    read: () => readWritersFile(dir),
    change: (change) => changeWritersFile(dir, change),
    operatorKey: () => readIdentityOwner(operatorIdentityPath(dir)),
    manifest: openManifestStore(dir),
    close: () => {},
  };
}

function _format(
  policy: WritersPolicy,
  operator: string | undefined,
  published: Map<string, number>,
): string {
  const quota = (bytes: number | undefined) => bytes === undefined ? "none" : formatBytes(bytes);
  const lines = [
    policy.open
      ? "writers: open (any key may store parts; `fts writers closed` allows only those listed)"
      : "writers: closed (only the keys listed and the operator's may store parts)",
    `default quota: ${quota(policy.defaultQuotaBytes)}`,
  ];
  // Files preload placed belong to "operator", which stands for the operator's key.
  const operatorBytes = (published.get(OPERATOR_OWNER) ?? 0) +
    (operator !== undefined ? published.get(operator) ?? 0 : 0);
  lines.push(
    `operator ${operator ?? "(no key yet)"}: always allowed, no quota, ${
      formatBytes(operatorBytes)
    } published`,
  );
  for (const key of policy.hostKeys ?? []) {
    if (key !== operator) lines.push(`host ${key}: always allowed, no quota (fts cluster --etcd)`);
  }
  const keys = Object.keys(policy.keys).sort();
  if (keys.length === 0) lines.push("no keys listed");
  for (const key of keys) {
    const own = policy.keys[key]!.quotaBytes;
    lines.push(
      `${key}  quota ${
        own === undefined ? `${quota(policy.defaultQuotaBytes)} (default)` : quota(own)
      }, ${formatBytes(published.get(key) ?? 0)} published`,
    );
  }
  return lines.join("\n");
}
