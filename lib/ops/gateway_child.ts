/**
 * The HTTP gateway `fts cluster --http PORT` runs beside its instances: an
 * `fts gateway` child on the cluster's host, given the cluster's TLS flags
 * (so it speaks HTTPS with the cluster's certificate and TLS to the
 * instances), stopped with the cluster, and stopping by itself when the
 * cluster's process is gone (killed with SIGKILL, say), as instances do.
 */
import { FtsChild } from "./fts_child.ts";

/** How long the gateway may take to print its ready line. */
export const GATEWAY_READY_TIMEOUT_MS = 30_000;
/** How long the gateway gets to exit after SIGTERM before SIGKILL. */
export const GATEWAY_STOP_GRACE_MS = 3_000;

export interface GatewayChild {
  /** The base URL it serves at. */
  url: string;
  pid: number;
  /** Settles when the gateway exits, for whatever reason. */
  exited: Promise<Deno.CommandStatus>;
  stop(): Promise<void>;
}

/** Starts `fts gateway` for the cluster in `dir` and waits until it serves. */
export async function startGatewayChild(
  dir: string,
  options: { host: string; port: number; args?: string[] },
): Promise<GatewayChild> {
  const child = new FtsChild([
    "gateway",
    "--data",
    dir,
    "--host",
    options.host,
    "--port",
    String(options.port),
    "--quiet",
    "--parent-pid",
    String(Deno.pid),
    ...(options.args ?? []),
  ]);
  try {
    await child.waitFor(/ready: https?:\/\/\S+\//, GATEWAY_READY_TIMEOUT_MS);
  } catch (error) {
    child.signal("SIGKILL");
    await child.status;
    // Its own last line says why (a port in use, say): part of the one line
    // printed. Its --port is the cluster's --http.
    const said = child.stderr.trim().split("\n").at(-1)?.replace(/^fts gateway: /, "")
      .replace(/ \(--verbose for the cause\)$/, "").replace("--port", "--http");
    throw new Error(
      `The HTTP gateway did not start on port ${options.port}${said ? `: ${said}` : ""}`,
      { cause: error },
    );
  }
  const url = /ready: (https?:\/\/\S+?)\/ /.exec(child.stdout)?.[1] ?? "";
  return {
    url,
    pid: child.pid,
    exited: child.status,
    async stop() {
      if (child.exited) return;
      child.signal("SIGTERM");
      const timer = setTimeout(() => child.signal("SIGKILL"), GATEWAY_STOP_GRACE_MS);
      await child.status;
      clearTimeout(timer);
    },
  };
}
