import { checkHostAddress } from "../lib/etcd/host_address.ts";
import {
  boolFlag,
  durationFlag,
  ETCD_FLAGS,
  etcdTarget,
  expectPositionals,
  intFlag,
  MIN_CONNECTION_TIMEOUT_MS,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { dataPaths, loadConfig, resolveDataDir } from "../lib/state/config.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { Server } from "../lib/server/server.ts";
import { PartStore } from "../lib/state/store.ts";
import { onParentGone, onStopSignal } from "../lib/base/stop_signal.ts";
import { manifestPath } from "../lib/state/manifest_guard.ts";

export const USAGE =
  "fts serve --port P [--host H] [--limit-rate RATE] [--idle-timeout 60s] [--max-connections 128] [--verify-rate 64MiB] [--tls-cert FILE --tls-key FILE] [--public-port P] [--data DIR] [--etcd URLS --host ADDR [--store DIR] [--zone NAME] [--cluster NAME]]";

export const EXAMPLE = [
  "fts serve --port 9001 --data ./fts-data",
  "fts serve --etcd http://10.0.0.1:2379 --host 10.0.0.2 --port 9001 --store /srv/fts/9001",
].join("\n");

/** Pause before accepting again after accept() failed (e.g. out of descriptors). */
const ACCEPT_RETRY_MS = 100;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "parent-pid": { type: "string" },
    "idle-timeout": { type: "string" },
    "request-timeout": { type: "string" },
    "max-connections": { type: "string" },
    "verify-rate": { type: "string" },
    "limit-rate": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "public-port": { type: "string" },
    quiet: { type: "boolean" },
    store: { type: "string" },
    zone: { type: "string" },
    ...ETCD_FLAGS,
  });
  expectPositionals(flags, 0, 0, USAGE);
  const etcd = etcdTarget(flags);
  if (etcd && stringFlag(flags, "host") === undefined) {
    throw new UsageError(
      "--etcd needs --host ADDR: the address other hosts reach this instance on",
    );
  }
  if (etcd) checkHostAddress(stringFlag(flags, "host")!);
  if (!etcd && (stringFlag(flags, "store") ?? stringFlag(flags, "zone")) !== undefined) {
    throw new UsageError("--store and --zone belong to an instance of a cluster in etcd (--etcd)");
  }
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const port = intFlag(flags, "port", 0, 65535);
  if (port === undefined) throw new UsageError(`Missing --port; usage: ${USAGE}`);
  const config = await loadConfig(dir);
  const host = stringFlag(flags, "host") ?? config?.host ?? "127.0.0.1";
  const parentPid = intFlag(flags, "parent-pid", 1, 2 ** 31);
  const idleTimeoutMs = durationFlag(flags, "idle-timeout", MIN_CONNECTION_TIMEOUT_MS);
  const requestTimeoutMs = durationFlag(flags, "request-timeout", MIN_CONNECTION_TIMEOUT_MS);
  const maxConnections = intFlag(flags, "max-connections", 1, 100_000);
  const limitRate = sizeFlag(flags, "limit-rate");
  const verifyBytesPerSecond = sizeFlag(flags, "verify-rate");
  if (verifyBytesPerSecond !== undefined && verifyBytesPerSecond < 1024) {
    throw new UsageError("--verify-rate must be at least 1KiB");
  }
  if (limitRate !== undefined && limitRate < 1024) {
    throw new UsageError("--limit-rate must be at least 1KiB");
  }

  // TLS and the mutations handler are loaded only when used: each module an
  // idle instance loads costs it resident memory, times 50 instances.
  const tlsCert = stringFlag(flags, "tls-cert");
  const tlsKey = stringFlag(flags, "tls-key");
  const tls = tlsCert === undefined && tlsKey === undefined
    ? undefined
    : await (await import("../lib/wire/tls.ts")).loadTlsServerOptions(tlsCert, tlsKey);
  // The port clients reach this instance on, when a proxy or a port mapping
  // sits in front of it: that port is the instance's id in the manifest.
  const publicPort = intFlag(flags, "public-port", 1, 65535);
  // An instance of this data directory's cluster is one of its ports (0: any port, for trials).
  const servedPort = publicPort ?? port;
  if (!etcd && config && servedPort !== 0) {
    const last = config.basePort + config.servers - 1;
    if (servedPort < config.basePort || servedPort > last) {
      throw new UsageError(
        `Port ${servedPort} is not one of the instances of the cluster in ${dir} ` +
          `(ports ${config.basePort}-${last}): serve one of those, or give another --data`,
      );
    }
  }

  let listener: Deno.Listener;
  try {
    listener = tls
      ? Deno.listenTls({ hostname: host, port, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: host, port });
  } catch (cause) {
    if (cause instanceof Deno.errors.AddrNotAvailable) {
      throw new UsageError(
        `--host ${host} is not an address of this machine: cannot listen on ${host}:${port}`,
        { cause },
      );
    }
    if (cause instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `Port ${port} on ${host} is already in use (another instance? try "fts status")`,
        {
          cause,
        },
      );
    }
    throw new Error(`Cannot listen on ${host}:${port}`, { cause });
  }
  const actualPort = (listener.addr as Deno.NetAddr).port;
  const localId = String(publicPort ?? actualPort);
  const paths = dataPaths(dir);
  const limits = {
    ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
    ...(requestTimeoutMs !== undefined ? { requestTimeoutMs } : {}),
    ...(maxConnections !== undefined ? { maxConnections } : {}),
    ...(verifyBytesPerSecond !== undefined ? { verifyBytesPerSecond } : {}),
  };
  const rate = limitRate !== undefined ? { limitRateBytesPerSecond: limitRate } : {};
  const storeDir = stringFlag(flags, "store");
  const store = new PartStore(storeDir ?? paths.instanceDir(localId));
  // Made once the start cannot be refused for etcd's reasons: a refused one leaves no store.
  const initStore = async () => {
    await store.init();
    await store.cleanStaleTemps({ starting: true });
  };
  let id = localId;
  let leave: (() => Promise<void>) | undefined;
  let server: Server;
  if (etcd) {
    // In etcd, an instance is known by the address other hosts dial.
    id = `${host}:${localId}`;
    const { EtcdCluster } = await import("../lib/etcd/etcd_cluster.ts");
    const { etcdMutationsContext, freeAnnouncedCopies } = await import(
      "../lib/ops/etcd_instance.ts"
    );
    const cluster = new EtcdCluster(etcd.endpoints, etcd.cluster);
    // The cluster id never changes: read once here, not per signed request
    // (each read would wait out etcd's timeout while etcd has no quorum).
    const { clusterId } = await cluster.requireSettings();
    await initStore();
    const self = { id, store, clusterId, hostDir: storeDir === undefined ? dir : undefined };
    cluster.manifest.storedContentIds = true;
    server = new Server({
      id,
      store,
      manifest: cluster.manifest,
      mutations: async () =>
        new (await import("../lib/server/mutations.ts")).Mutations(
          etcdMutationsContext(cluster, self),
        ),
      addressOf: (other) => other,
      limits,
      ...rate,
      places: { dataDir: dir, manifest: `etcd (cluster ${JSON.stringify(etcd.cluster)})` },
    });
    const zone = stringFlag(flags, "zone");
    // While its part store cannot be read (or its disk stalled) it holds no copy: not alive,
    // so the host elected to heal copies its parts elsewhere.
    const left = (await cluster.join({ id, address: id, domain: zone ?? host }, {
      healthy: () => store.problem() === undefined,
    })).stop;
    // Copies of parts a delete on another host left unused are freed as it says so: by the
    // supervisor for its host's instances, else by the instance for its own store.
    const freeing = new AbortController();
    if (parentPid === undefined) {
      const stores = () => Promise.resolve([store]);
      const storeOf = (other: string) => other === id ? store : undefined;
      void freeAnnouncedCopies(cluster, { holder: id, stores, storeOf }, freeing.signal);
    }
    leave = () => {
      freeing.abort();
      return left();
    };
  } else {
    await initStore();
    // One store for serving and for signed changes (openManifestStore keeps
    // one per directory in a process), named here so that it shows: the
    // changes read entries whose content ids are taken as stored, and
    // compute their own from the parts (mutations.ts).
    const manifest = openManifestStore(dir, { serving: true });
    server = new Server({
      id,
      store,
      manifest,
      mutations: async () => {
        const { Mutations, fileMutationsContext } = await import("../lib/server/mutations.ts");
        return new Mutations(fileMutationsContext(dir, manifest));
      },
      addressOf: (other) => `${host}:${other}`,
      limits,
      ...rate,
      places: { dataDir: dir, manifest: manifestPath(dir) },
    });
  }
  await Deno.mkdir(paths.runDir, { recursive: true });
  const pidFile = paths.pidFile(localId);
  // Sync: the async form loads Deno's web streams to check for a stream
  // argument, about 8 ms of each instance's start (a tenth of it).
  Deno.writeTextFileSync(pidFile, `${Deno.pid}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void leave?.();
    try {
      listener.close();
    } catch { /* already closed */ }
    server.closeAll();
  };
  const stopListening = onStopSignal(stop);
  // Never outlive the supervisor, even one killed with SIGKILL.
  const stopParentWatch = onParentGone(parentPid, stop);

  if (!boolFlag(flags, "quiet")) {
    console.log(
      `fts serve: ready: instance ${id} listening on ${host}:${actualPort}${
        tls ? " with TLS" : ""
      } (pid ${Deno.pid})`,
    );
  }
  try {
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        // Out of descriptors and the like: keep serving the connections we
        // have and try again shortly, rather than stop being an instance.
        console.error(`fts serve: accept failed: ${(error as Error).message}; retrying`);
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      // Without no-delay, a reply written in more than one piece waits for the
      // client's delayed ACK: about 40 ms per small part.get.
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      server.accept(conn, (conn.remoteAddr as Deno.NetAddr).hostname);
    }
  } finally {
    await leave?.().catch(() => {});
    stopParentWatch();
    stopListening();
    // Only remove the pid file if it is still ours (a restart may have replaced it).
    try {
      if ((await Deno.readTextFile(pidFile)).trim() === String(Deno.pid)) {
        await Deno.remove(pidFile);
      }
    } catch { /* gone already */ }
  }
  return 0;
}
