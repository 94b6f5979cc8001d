/** Finding instances: their pid files, whether they answer, and the supervisor's control channel. */
import { type ClusterConfig, dataPaths, instancePorts } from "../state/config.ts";
import { ProtocolError, UsageError } from "../wire/errors.ts";
import { holdsFlock, processAlive, processCommandLine, readJsonFile } from "../base/fs_util.ts";
import { basename } from "../base/paths.ts";
import { INSTANCE_BUNDLE_PREFIX } from "./instance_bundle.ts";
import { withPeer } from "../client/peer.ts";
import { type TlsClientOptions, TlsError } from "../wire/tls.ts";

/** This program's name when it is a `deno compile`d fts (whatever it was renamed to). */
const COMPILED_NAME = /^deno(\.exe)?$/.test(basename(Deno.execPath()))
  ? undefined
  : basename(Deno.execPath());

/** The pid of a live `fts serve` for this instance, or undefined when it is down. */
export async function livePid(dir: string, id: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(dataPaths(dir).pidFile(id));
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
  // A recycled pid that now belongs to something else (even another server on
  // that port) is not our instance: it must be `fts serve` with this id.
  const args = processCommandLine(pid).split(" ");
  const isFts = args.some((arg) =>
    arg.endsWith("main.ts") || /(^|\/)fts$/.test(arg) ||
    basename(arg).startsWith(INSTANCE_BUNDLE_PREFIX) ||
    (COMPILED_NAME !== undefined && basename(arg) === COMPILED_NAME)
  );
  const isThisInstance = args.some((arg, i) =>
    (arg === "--port" || arg === "--public-port") && args[i + 1] === id
  );
  if (!isFts || !args.includes("serve") || !isThisInstance) return undefined;
  return pid;
}

/** Checks a PORT argument against the cluster; returns its instance id. */
export function instanceIdForPort(config: ClusterConfig, dir: string, port: number): string {
  const ports = instancePorts(config);
  if (!ports.includes(port)) {
    throw new UsageError(
      `Port ${port} is not an instance of the cluster in ${dir} (ports ${ports[0]}-${
        ports.at(-1)
      })`,
    );
  }
  return String(port);
}

export interface Probe {
  id: string;
  address: string;
  up: boolean;
  /**
   * It answered BUSY: running and holding its copies, but full of connections
   * (so no stats). Counted as up.
   */
  busy?: boolean;
  stats?: Record<string, unknown>;
  error?: string;
  /** It did not answer in time (connected or not): hung, or cut off; not refused. */
  timedOut?: boolean;
  /** It could not be spoken to for TLS (it speaks TLS and no CA was given, the wrong CA...). */
  tlsError?: TlsError;
}

/**
 * Asks every address for its stats at once; a silent one counts as down
 * after the timeout, one that answers BUSY as up and busy.
 */
export async function probeInstances(
  instances: { id: string; address: string }[],
  timeoutMs = 1_500,
  tls?: TlsClientOptions,
): Promise<Probe[]> {
  const options = { connectTimeoutMs: timeoutMs, stallTimeoutMs: timeoutMs, tls };
  return await Promise.all(instances.map(async ({ id, address }) => {
    try {
      const stats = await withPeer(address, options, (peer) => peer.stats());
      return { id, address, up: true, stats };
    } catch (error) {
      if (error instanceof ProtocolError && error.code === "BUSY") {
        return { id, address, up: true, busy: true, error: error.message };
      }
      return {
        id,
        address,
        up: false,
        error: error instanceof Error ? error.message : String(error),
        timedOut: error instanceof ProtocolError && error.code === "TIMEOUT",
        ...(error instanceof TlsError ? { tlsError: error } : {}),
      };
    }
  }));
}

export interface SupervisorInfo {
  pid: number;
  controlPort: number;
}

/** The running supervisor for this data directory, if any. */
export async function runningSupervisor(dir: string): Promise<SupervisorInfo | undefined> {
  let value: unknown;
  try {
    value = await readJsonFile(dataPaths(dir).clusterFile);
  } catch {
    return undefined;
  }
  const v = value as { pid?: unknown; controlPort?: unknown } | undefined;
  if (typeof v?.pid !== "number" || typeof v.controlPort !== "number") return undefined;
  if (!processAlive(v.pid)) return undefined;
  // Left by a supervisor that died (a crash, a reboot): the pid may be anyone's now. A
  // supervisor makes its lock file before it records itself: no file, no supervisor.
  if (holdsFlock(v.pid, dataPaths(dir).supervisorLock) === false) return undefined;
  return { pid: v.pid, controlPort: v.controlPort };
}

/** Sends one JSON line to the supervisor's control port and reads one back. */
export async function controlRequest(
  info: SupervisorInfo,
  request: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: info.controlPort });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
    return JSON.parse(text.trim()) as Record<string, unknown>;
  } catch (cause) {
    throw new Error("The cluster supervisor did not answer", { cause });
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}
