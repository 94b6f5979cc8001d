/**
 * An fts cluster for the benchmark: files preloaded into a fresh data
 * directory, `fts cluster` on a free loopback port range, and what the
 * scenarios need from it (fetch command line, bytes served, pids, restart).
 */
import { join } from "node:path";
import { DENO, FtsProcess, instanceStats, MAIN, runFts } from "./fts_process.ts";
import { freePortRange } from "./port_claims.ts";

/** Preloading gigabytes on a busy machine takes a while. */
const PRELOAD_TIMEOUT_MS = 30 * 60_000;
const READY_TIMEOUT_MS = 120_000;
/** Paths given to one `fts preload`: thousands of small files in a few runs, within ARG_MAX. */
const PRELOAD_PATHS_PER_RUN = 1_000;

export class BenchCluster {
  readonly dir: string;
  readonly ports: number[];
  readonly supervisor: FtsProcess;

  private constructor(dir: string, ports: number[], supervisor: FtsProcess) {
    this.dir = dir;
    this.ports = ports;
    this.supervisor = supervisor;
  }

  /** Preloads `files` (paths) into `dir` and starts the cluster. */
  static async start(
    dir: string,
    options: { servers: number; replicas: number; files: string[]; partSize?: string },
  ): Promise<BenchCluster> {
    const basePort = freePortRange(options.servers);
    const setup = [
      "--data",
      dir,
      "--servers",
      String(options.servers),
      "--base-port",
      String(basePort),
      "--replicas",
      String(options.replicas),
    ];
    const partSize = options.partSize ? ["--part-size", options.partSize] : [];
    for (let at = 0; at < options.files.length; at += PRELOAD_PATHS_PER_RUN) {
      const paths = options.files.slice(at, at + PRELOAD_PATHS_PER_RUN);
      const preload = await runFts(["preload", ...paths, "--quiet", ...setup, ...partSize], {
        timeoutMs: PRELOAD_TIMEOUT_MS,
      });
      if (preload.code !== 0) throw new Error(`fts preload ${paths[0]} failed: ${preload.stderr}`);
    }
    const supervisor = new FtsProcess(["cluster", ...setup]);
    try {
      await supervisor.waitFor(/fts cluster: ready/, READY_TIMEOUT_MS);
    } catch (error) {
      supervisor.kill("SIGTERM");
      await supervisor.status;
      throw error;
    }
    const ports = Array.from({ length: options.servers }, (_, i) => basePort + i);
    return new BenchCluster(dir, ports, supervisor);
  }

  /** Deno and its arguments for `fts fetch NAME DEST [EXTRA...]` against this cluster (JSON result). */
  fetchCommand(
    name: string,
    destDir: string,
    extra: string[] = [],
  ): { program: string; args: string[] } {
    return {
      program: DENO,
      args: [
        "run",
        "--allow-all",
        "--quiet",
        MAIN,
        "fetch",
        name,
        destDir,
        "--data",
        this.dir,
        "--json",
        ...extra,
      ],
    };
  }

  /** Every live instance's bytesServed counter (the `stats` op), by port. */
  async bytesServed(): Promise<Map<number, number>> {
    const counts = await Promise.all(this.ports.map(async (port) => {
      try {
        return [[port, (await instanceStats(`127.0.0.1:${port}`)).bytesServed ?? 0] as const];
      } catch {
        return [];
      }
    }));
    return new Map(counts.flat());
  }

  /**
   * Bytes served between two `bytesServed()` readings; undefined when an
   * instance went down in between (its count died with it).
   */
  static served(before: Map<number, number>, after: Map<number, number>): number | undefined {
    let total = 0;
    for (const [port, count] of before) {
      const now = after.get(port);
      if (now === undefined || now < count) return undefined;
      total += now - count;
    }
    for (const [port, count] of after) if (!before.has(port)) total += count;
    return total;
  }

  /** The pid of the instance on `port`, from its pid file. */
  async pidOf(port: number): Promise<number | undefined> {
    try {
      const pid = Number((await Deno.readTextFile(join(this.dir, "run", `${port}.pid`))).trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Brings a killed instance back (`fts start PORT`). */
  async restart(port: number): Promise<void> {
    const result = await runFts(["start", String(port), "--data", this.dir]);
    if (result.code !== 0) throw new Error(`fts start ${port} failed: ${result.stderr}`);
  }

  async stop(): Promise<void> {
    this.supervisor.kill("SIGTERM");
    await this.supervisor.status;
  }
}
