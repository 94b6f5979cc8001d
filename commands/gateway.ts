import { checkLocalAddress } from "../lib/etcd/host_address.ts";
import { resolve } from "../lib/base/paths.ts";
import { onParentGone, onStopSignal } from "../lib/base/stop_signal.ts";
import { clock, formatBytes, plural } from "../lib/base/units.ts";
import {
  boolFlag,
  durationFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  intFlag,
  listFlag,
  MIN_CONNECTION_TIMEOUT_MS,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { DEFAULT_PART_BUDGET_BYTES, Gateway } from "../lib/gateway/gateway.ts";
import { dataDirSource, type GatewaySource } from "../lib/gateway/gateway_source.ts";
import { resolveDataDir } from "../lib/state/config.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { loadTlsClientOptions, loadTlsServerOptions } from "../lib/wire/tls.ts";

export const USAGE =
  "fts gateway [--port 8080] [--host 127.0.0.1] [--server HOST:PORT]... [--mirror URL]... [--public-url URL] [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] [--memory 256MiB] [--parts-in-flight 2] [--write-timeout 30s] [--header-timeout 10s] [--verify] [--quiet] [--data DIR | --etcd URLS [--cluster NAME]]";

export const EXAMPLE = [
  "fts gateway --port 8080                       # then: curl -O http://127.0.0.1:8080/files/movie.mkv",
  "fts gateway --host 0.0.0.0 --public-url http://10.0.0.5:8080 --server 10.0.0.5:9001 --mirror http://10.0.0.6:8080",
].join("\n");

/** The port `fts gateway` listens on without --port. */
export const DEFAULT_GATEWAY_PORT = 8080;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    server: { type: "string", multiple: true },
    mirror: { type: "string", multiple: true },
    "public-url": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "tls-ca": { type: "string" },
    memory: { type: "string" },
    "parts-in-flight": { type: "string" },
    "write-timeout": { type: "string" },
    "header-timeout": { type: "string" },
    verify: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
    // Given by fts cluster: the gateway stops when its supervisor is gone, even SIGKILLed.
    "parent-pid": { type: "string" },
    ...ETCD_FLAGS,
  });
  expectPositionals(flags, 0, 0, USAGE);
  const parentPid = intFlag(flags, "parent-pid", 1, 2 ** 31);
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const etcd = etcdTarget(flags);
  const port = intFlag(flags, "port", 0, 65535) ?? DEFAULT_GATEWAY_PORT;
  const hostname = stringFlag(flags, "host") ?? "127.0.0.1";
  // An address of this machine (IPv6 and wildcards too: clients dial the gateway's URL).
  checkLocalAddress(hostname);
  const mirrors = listFlag(flags, "mirror").map((url) => _checkUrl(url, "--mirror"));
  const publicUrl = stringFlag(flags, "public-url");
  if (publicUrl !== undefined) _checkUrl(publicUrl, "--public-url");
  const memory = sizeFlag(flags, "memory");
  if (memory !== undefined && memory < 1024 * 1024) {
    throw new UsageError(`--memory must be at least 1MiB, got ${memory} bytes`);
  }
  const partsInFlight = intFlag(flags, "parts-in-flight", 1, 16);
  const writeStallTimeoutMs = durationFlag(flags, "write-timeout", MIN_CONNECTION_TIMEOUT_MS);
  const requestHeadTimeoutMs = durationFlag(flags, "header-timeout", MIN_CONNECTION_TIMEOUT_MS);
  const tls = await loadTlsServerOptions(
    _path(stringFlag(flags, "tls-cert")),
    _path(stringFlag(flags, "tls-key")),
  );
  const instanceTls = await loadTlsClientOptions(stringFlag(flags, "tls-ca"));
  const quiet = boolFlag(flags, "quiet");
  let closeEtcd = () => {};
  let source: GatewaySource;
  if (etcd && listFlag(flags, "server").length === 0) {
    // Every host's gateway announces itself in etcd; the instances are those alive there.
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const { etcdGatewaySource } = await import("../lib/gateway/etcd_gateway_source.ts");
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    await cluster.requireSettings();
    closeEtcd = () => cluster.close();
    source = etcdGatewaySource(cluster, etcd, mirrors);
  } else {
    source = dataDirSource(dir, listFlag(flags, "server"), mirrors);
  }
  // Fails early, with the usual message, when there is no cluster to serve.
  const servers = await source.servers();

  let gateway: Gateway;
  try {
    gateway = await Gateway.start({
      source,
      hostname,
      port,
      tls,
      instanceTls,
      publicUrl,
      verify: boolFlag(flags, "verify"),
      ...(memory !== undefined ? { partBudgetBytes: memory } : {}),
      ...(partsInFlight !== undefined ? { partsInFlight } : {}),
      ...(writeStallTimeoutMs !== undefined ? { writeStallTimeoutMs } : {}),
      ...(requestHeadTimeoutMs !== undefined ? { requestHeadTimeoutMs } : {}),
      log: (line) => {
        if (!quiet) console.log(`${clock(Date.now())} gateway: ${line}`);
      },
    });
  } catch (cause) {
    if (cause instanceof Deno.errors.AddrInUse) {
      // A failure (exit 1), as for fts serve and fts cluster: the flag is fine, the port taken.
      throw new Error(`Port ${port} on ${hostname} is in use: pick another with --port`, {
        cause,
      });
    }
    throw cause;
  }
  console.log(
    `fts gateway: ready: ${gateway.url}/ serves the files of ${
      plural(servers.length, "instance")
    }` +
      ` (port ${gateway.port}, parts in memory at most ${
        formatBytes(memory ?? DEFAULT_PART_BUDGET_BYTES)
      }); Ctrl-C stops it` +
      (gateway.announced
        ? ""
        : `; other gateways' Metalinks do not list it (--public-url URL says how clients reach it)`),
  );
  const stopped = Promise.withResolvers<void>();
  const stopListening = onStopSignal(() => stopped.resolve());
  const stopParentWatch = onParentGone(parentPid, () => stopped.resolve());
  await stopped.promise;
  stopParentWatch();
  stopListening();
  await gateway.stop();
  closeEtcd();
  if (!quiet) console.log("fts gateway: stopped");
  return 0;
}

function _path(path: string | undefined): string | undefined {
  return path === undefined ? undefined : resolve(path);
}

function _checkUrl(url: string, flag: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new UsageError(`${flag} ${JSON.stringify(url)} is not a URL`, { cause });
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`${flag} ${JSON.stringify(url)} must be an http:// or https:// URL`);
  }
  return url.replace(/\/+$/, "");
}
