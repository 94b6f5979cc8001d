/**
 * What fts is compared against: nginx serving the same file to curl, and an
 * rsync daemon. Each runs from its own config file in the benchmark's temp dir,
 * in the foreground as our child, on a loopback port; installed from Debian's
 * packages when missing.
 */
import { join } from "node:path";
import { childEnv, sleep, spawnPiped } from "./measure.ts";

/** How long a daemon may take to listen. */
const LISTEN_TIMEOUT_MS = 10_000;
/** How long a daemon gets to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3_000;

const SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The full path of a program, or undefined when it is not installed. */
export function findProgram(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), ...SEARCH_PATH];
  for (const dir of dirs) {
    try {
      const path = join(dir, name);
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Program -> the Debian package that provides it. */
const PACKAGES: Record<string, string> = {
  nginx: "nginx",
  rsync: "rsync",
  curl: "curl",
  time: "time",
  wget: "wget",
};

/** Installs whichever of nginx, rsync, curl, wget and time is missing (apt-get update once). */
export async function ensureTools(log: (line: string) => void): Promise<Record<string, string>> {
  const missing = Object.keys(PACKAGES).filter((program) =>
    program === "time" ? !_isFile("/usr/bin/time") : findProgram(program) === undefined
  );
  if (missing.length > 0) {
    const packages = missing.map((program) => PACKAGES[program]!);
    log(`installing ${packages.join(", ")} from Debian's packages`);
    const env = { ...childEnv(), DEBIAN_FRONTEND: "noninteractive" };
    for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...packages]]) {
      const result = await new Deno.Command("apt-get", { args, env, stdin: "null" }).output();
      if (result.code !== 0) {
        throw new Error(
          `apt-get ${args.join(" ")} failed: ${new TextDecoder().decode(result.stderr).trim()}`,
        );
      }
    }
  }
  const paths: Record<string, string> = {};
  for (const program of ["nginx", "rsync", "curl", "wget"]) {
    const path = findProgram(program);
    if (!path) throw new Error(`${program} is still missing after apt-get install`);
    paths[program] = path;
  }
  return paths;
}

function _isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

async function _waitListening(port: number, child: Deno.ChildProcess, what: string) {
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  let exited = false;
  child.status.then(() => (exited = true));
  while (Date.now() < deadline && !exited) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port}`);
}

async function _waitForFile(path: string, child: Deno.ChildProcess, what: string) {
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  let exited = false;
  child.status.then(() => (exited = true));
  while (Date.now() < deadline && !exited) {
    if (_isFile(path)) return;
    await sleep(50);
  }
  throw new Error(`${what} wrote no ${path}`);
}

/** A foreground daemon we started; its output is drained into a log file. */
class _Daemon {
  readonly child: Deno.ChildProcess;
  readonly #drained: Promise<unknown>;

  constructor(program: string, args: string[], logPath: string, prefix: string[] = []) {
    const [first, ...rest] = [...prefix, program];
    const child = spawnPiped(first!, [...rest, ...args]);
    this.child = child;
    this.#drained = (async () => {
      const log = await Deno.open(logPath, { append: true, create: true });
      try {
        const drain = async (stream: ReadableStream<Uint8Array>) => {
          for await (const chunk of stream) await log.write(chunk);
        };
        await Promise.all([drain(child.stdout), drain(child.stderr)]);
      } finally {
        log.close();
      }
    })().catch(() => {});
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* exited */ }
    const grace = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited */ }
    }, STOP_GRACE_MS);
    await this.child.status;
    clearTimeout(grace);
    await this.#drained;
  }
}

/** Where nginx runs when not on loopback: inside a test host (bench/test_hosts.ts). */
export interface NginxPlace {
  /** The command that runs a program there, e.g. `ip netns exec NS`. */
  prefix: string[];
  /** The address it listens on there. */
  host: string;
}

/** nginx serving `rootDir` on a loopback port (or in a test host), logging the bytes it sends. */
export class NginxServer {
  readonly port: number;
  readonly host: string;
  readonly #daemon: _Daemon;
  readonly #accessLog: string;

  private constructor(port: number, host: string, daemon: _Daemon, accessLog: string) {
    this.port = port;
    this.host = host;
    this.#daemon = daemon;
    this.#accessLog = accessLog;
  }

  static async start(
    program: string,
    workDir: string,
    rootDir: string,
    port: number,
    place?: NginxPlace,
    options: { autoindex?: boolean } = {},
  ): Promise<NginxServer> {
    const host = place?.host ?? "127.0.0.1";
    const dir = join(workDir, place ? `nginx-${host}` : "nginx");
    await Deno.mkdir(dir, { recursive: true });
    const accessLog = join(dir, "access.log");
    // The stock Debian settings that matter for one big file (sendfile, one
    // worker for one client); every path inside our temp dir.
    const config = `
daemon off;
master_process on;
worker_processes 1;
${Deno.uid() === 0 ? "user root;" : ""}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  log_format bytes '$bytes_sent';
  access_log ${accessLog} bytes;
  server {
    listen ${host}:${port};
    root ${rootDir};
    autoindex ${options.autoindex ? "on" : "off"};
  }
}
`;
    const configPath = join(dir, "nginx.conf");
    await Deno.writeTextFile(configPath, config);
    await Deno.writeTextFile(accessLog, "");
    const daemon = new _Daemon(
      program,
      ["-c", configPath, "-p", dir],
      join(dir, "output.log"),
      place?.prefix,
    );
    try {
      // This process has no route into a test host: there, nginx's pid file
      // says it listens (it is written once the sockets are bound).
      if (place) await _waitForFile(join(dir, "nginx.pid"), daemon.child, "nginx");
      else await _waitListening(port, daemon.child, "nginx");
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return new NginxServer(port, host, daemon, accessLog);
  }

  url(name: string): string {
    return `http://${this.host}:${this.port}/${encodeURIComponent(name)}`;
  }

  /** Total bytes (headers and body) nginx has logged as sent. */
  async bytesSent(): Promise<number> {
    const text = await Deno.readTextFile(this.#accessLog);
    return text.split("\n").reduce((sum, line) => sum + (Number(line.trim()) || 0), 0);
  }

  async stop(): Promise<void> {
    await this.#daemon.stop();
  }
}

/** An rsync daemon exporting `moduleDir` read-only as module "bench". */
export class RsyncDaemon {
  readonly port: number;
  readonly #daemon: _Daemon;

  private constructor(port: number, daemon: _Daemon) {
    this.port = port;
    this.#daemon = daemon;
  }

  static async start(
    program: string,
    workDir: string,
    moduleDir: string,
    port: number,
  ): Promise<RsyncDaemon> {
    const dir = join(workDir, "rsyncd");
    await Deno.mkdir(dir, { recursive: true });
    const config = `
use chroot = no
${Deno.uid() === 0 ? "uid = root\ngid = root" : ""}
pid file = ${dir}/rsyncd.pid
log file = ${dir}/rsyncd.log
transfer logging = yes
log format = %o %f %l %b

[bench]
path = ${moduleDir}
read only = yes
`;
    const configPath = join(dir, "rsyncd.conf");
    await Deno.writeTextFile(configPath, config);
    const daemon = new _Daemon(program, [
      "--daemon",
      "--no-detach",
      "--address",
      "127.0.0.1",
      "--port",
      String(port),
      "--config",
      configPath,
    ], join(dir, "output.log"));
    try {
      await _waitListening(port, daemon.child, "rsync --daemon");
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return new RsyncDaemon(port, daemon);
  }

  url(name: string): string {
    return `rsync://127.0.0.1:${this.port}/bench/${name}`;
  }

  async stop(): Promise<void> {
    await this.#daemon.stop();
  }
}

/** The bytes the rsync server sent, from the client's `--stats` ("Total bytes received"). */
export function rsyncBytesReceived(statsOutput: string): number {
  const match = /Total bytes received:\s*([\d,.]+)/.exec(statsOutput);
  if (!match) throw new SyntaxError('rsync --stats output has no "Total bytes received" line');
  return Number(match[1]!.replace(/[,.]/g, ""));
}
