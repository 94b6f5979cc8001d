import {
  boolFlag,
  durationFlag,
  intFlag,
  parseFlags,
  sizeFlag,
  stringFlag,
} from "../lib/cli/flags.ts";
import { dataPaths, loadConfig, resolveDataDir } from "../lib/state/config.ts";
import { every } from "../lib/base/deadline.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { processAlive } from "../lib/base/fs_util.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { Server } from "../lib/server/server.ts";
import { PartStore } from "../lib/state/store.ts";
import { onStopSignal } from "../lib/base/stop_signal.ts";

export const USAGE =
  "fts serve --port P [--host H] [--limit-rate RATE] [--idle-timeout 60s] [--max-connections 128] [--tls-cert FILE --tls-key FILE] [--public-port P] [--data DIR]";

export const EXAMPLE = [
  "fts serve --port 9001 --data ./fts-data",
].join("\n");

/** Pause before accepting again after accept() failed (e.g. out of descriptors). */
const ACCEPT_RETRY_MS = 100;

/** How often a server started by a supervisor checks that its parent lives. */
const PARENT_CHECK_INTERVAL_MS = 1_000;

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    data: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "parent-pid": { type: "string" },
    "idle-timeout": { type: "string" },
    "request-timeout": { type: "string" },
    "max-connections": { type: "string" },
    "limit-rate": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "public-port": { type: "string" },
    quiet: { type: "boolean" },
  });
  const dir = resolveDataDir(stringFlag(flags, "data"));
  const port = intFlag(flags, "port", 0, 65535);
  if (port === undefined) throw new UsageError(`Missing --port; usage: ${USAGE}`);
  const config = await loadConfig(dir);
  const host = stringFlag(flags, "host") ?? config?.host ?? "127.0.0.1";
  const parentPid = intFlag(flags, "parent-pid", 1, 2 ** 31);
  const idleTimeoutMs = durationFlag(flags, "idle-timeout");
  const requestTimeoutMs = durationFlag(flags, "request-timeout");
  const maxConnections = intFlag(flags, "max-connections", 1, 100_000);
  const limitRate = sizeFlag(flags, "limit-rate");
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

  let listener: Deno.Listener;
  try {
    listener = tls
      ? Deno.listenTls({ hostname: host, port, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: host, port });
  } catch (cause) {
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
  const id = String(publicPort ?? actualPort);
  const paths = dataPaths(dir);
  const store = new PartStore(paths.instanceDir(id));
  await store.init();
  await store.cleanStaleTemps();
  const server = new Server({
    id,
    store,
    manifest: openManifestStore(dir),
    mutations: async () => {
      const { Mutations, fileMutationsContext } = await import("../lib/server/mutations.ts");
      return new Mutations(fileMutationsContext(dir));
    },
    addressOf: (other) => `${host}:${other}`,
    limits: {
      ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
      ...(requestTimeoutMs !== undefined ? { requestTimeoutMs } : {}),
      ...(maxConnections !== undefined ? { maxConnections } : {}),
    },
    ...(limitRate !== undefined ? { limitRateBytesPerSecond: limitRate } : {}),
  });
  await Deno.mkdir(paths.runDir, { recursive: true });
  const pidFile = paths.pidFile(id);
  await Deno.writeTextFile(pidFile, `${Deno.pid}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    try {
      listener.close();
    } catch { /* already closed */ }
    server.closeAll();
  };
  const stopListening = onStopSignal(stop);
  const stopParentWatch = parentPid === undefined
    ? undefined
    : every(PARENT_CHECK_INTERVAL_MS, () => {
      // Never outlive the supervisor, even one killed with SIGKILL.
      if (!processAlive(parentPid)) stop();
    });

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
      server.accept(conn);
    }
  } finally {
    stopParentWatch?.();
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
