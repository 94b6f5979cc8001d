/**
 * The shared test harness: clusters of real `fts` processes on loopback, and
 * helpers to run fetches, compare files and read what a cluster wrote. How an
 * `fts` child is run, free port ranges and data files live in bench/ (the
 * benchmark uses them and must not import the tests); they are re-exported here.
 */
import { join } from "node:path";
import { loadFetchState } from "../lib/client/fetch_state.ts";
import { xxh128Hex } from "../lib/hash/xxh128.ts";
import { sha256File, writeRandomFile } from "../bench/data_files.ts";
import {
  FtsProcess,
  type FtsSpawnOptions,
  instanceStats,
  runFts,
  type RunResult,
} from "../bench/fts_process.ts";
import { freePortRange } from "../bench/port_claims.ts";
import { unusableTool } from "./missing_tool.ts";
import { type FileEntry, MANIFEST_FORMAT, MANIFEST_VERSION } from "../lib/state/manifest.ts";
import { readManifest, updateManifest } from "./manifest_util.ts";

// Shared with the benchmark, which must not import the tests.
export { damageFile, sha256File, writeRandomFile } from "../bench/data_files.ts";
export {
  DENO,
  DrainedProcess,
  FtsProcess,
  type FtsSpawnOptions,
  instanceStats,
  MAIN,
  runFts,
  type RunResult,
} from "../bench/fts_process.ts";
export { freePortRange } from "../bench/port_claims.ts";

export async function tempDir(prefix = "fts-test-"): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/** Asserts two files are byte-identical (size and SHA-256). */
export async function assertSameFile(actual: string, expected: string): Promise<void> {
  const [a, b] = await Promise.all([Deno.stat(actual), Deno.stat(expected)]);
  if (a.size !== b.size) throw new Error(`${actual} has ${a.size} bytes, expected ${b.size}`);
  const [ha, hb] = await Promise.all([sha256File(actual), sha256File(expected)]);
  if (ha !== hb) throw new Error(`${actual} differs from ${expected}`);
}

/**
 * The `ignore` value of a test that runs strace: true where strace is missing
 * or may not trace (ptrace is forbidden in some containers).
 */
export function straceUnusable(): Promise<boolean> {
  return unusableTool("strace", async () => {
    const probe = new Deno.Command("strace", {
      args: ["-f", "-o", "/dev/null", "true"],
      stdout: "null",
      stderr: "null",
    });
    return (await probe.output()).success;
  }, "ptrace is not allowed");
}

/** The path of instance `id`'s stored copy of a part. */
export function storedPartPath(dataDir: string, id: string, digest: string): string {
  return join(dataDir, "instances", id, "parts", digest.slice(0, 2), digest);
}

/** The whole manifest of a data directory, in the JSON form of its snapshot file. */
export async function readManifestJson(dataDir: string): Promise<{
  format: string;
  version: number;
  generation: number;
  files: Record<
    string,
    {
      name: string;
      size: number;
      partSize: number;
      parts: { digest: string; size: number; replicas: string[] }[];
    }
  >;
}> {
  const { generation, files } = await readManifest(dataDir);
  return { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, generation, files };
}

/** Changes the parts of one file's entry in the manifest of a data directory. */
export async function editManifestEntry(
  dataDir: string,
  name: string,
  edit: (parts: Record<string, unknown>[]) => void,
): Promise<void> {
  await updateManifest(dataDir, (manifest) => {
    const entry = manifest.files[name]!;
    const parts = entry.parts as unknown as Record<string, unknown>[];
    edit(parts);
    manifest.files[name] = { ...entry, parts: parts as unknown as FileEntry["parts"] };
  });
}

/**
 * Overwrites every stored copy of part `index` of file `name` with `bytes`,
 * and makes the entry's XXH3-128 of that part match them (its SHA-256 stays):
 * a forgery only SHA-256 finds.
 */
export async function forgePart(
  dataDir: string,
  name: string,
  index: number,
  bytes: Uint8Array,
): Promise<void> {
  const part = (await readManifestJson(dataDir)).files[name]!.parts[index]!;
  for (const id of part.replicas) {
    await Deno.writeFile(storedPartPath(dataDir, id, part.digest), bytes);
  }
  await editManifestEntry(dataDir, name, (parts) => {
    parts[index]!.xxh128 = xxh128Hex(bytes);
  });
}

/** Waits until a fetch's control file records at least `parts` verified parts. */
export async function waitForVerifiedParts(
  statePath: string,
  parts: number,
  timeoutMs = 30_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // Absent or mid-replace reads as undefined: try again.
    const count = (await loadFetchState(statePath))?.verified.count() ?? 0;
    if (count >= parts) return count;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${statePath} never recorded ${parts} verified parts`);
}

export interface TestCluster {
  dir: string;
  work: string;
  basePort: number;
  ports: number[];
  supervisor: FtsProcess;
  /** Runs an fts command against this cluster's data directory. */
  fts(args: string[], options?: FtsSpawnOptions): Promise<RunResult>;
  /** Starts `fts fetch` in the background. */
  spawnFetch(name: string, dest: string, extra?: string[]): FtsProcess;
  kill(port: number): Promise<void>;
  start(port: number): Promise<void>;
  /** Sum of bytesServed over the instances that are up. */
  bytesServed(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Preloads files into a fresh data directory and starts a cluster on a free
 * port range. `files` maps names to sizes; sources are written to `work/src`.
 */
export async function startCluster(options: {
  servers?: number;
  replicas?: number;
  partSize?: string;
  files?: Record<string, number>;
  /** Extra flags for `fts cluster`, e.g. ["--limit-rate", "2MiB"]. */
  clusterArgs?: string[];
  /** Runs on the data directory after the preload, before the cluster starts. */
  beforeStart?: (dir: string) => Promise<void>;
}): Promise<TestCluster> {
  const servers = options.servers ?? 6;
  const replicas = options.replicas ?? 3;
  const work = await tempDir();
  const dir = join(work, "data");
  const src = join(work, "src");
  await Deno.mkdir(src);
  const basePort = freePortRange(servers);
  const ports = Array.from({ length: servers }, (_, i) => basePort + i);
  let seed = 1;
  const paths: string[] = [];
  for (const [name, size] of Object.entries(options.files ?? {})) {
    const path = join(src, name);
    await writeRandomFile(path, size, seed++);
    paths.push(path);
  }
  const common = ["--data", dir];
  const setup = [
    "--servers",
    String(servers),
    "--base-port",
    String(basePort),
    "--replicas",
    String(replicas),
  ];
  if (paths.length > 0) {
    const preload = await runFts([
      "preload",
      ...paths,
      ...common,
      ...setup,
      "--part-size",
      options.partSize ?? "256KiB",
    ]);
    if (preload.code !== 0) throw new Error(`preload failed: ${preload.stderr}`);
  }
  await options.beforeStart?.(dir);
  const supervisor = new FtsProcess([
    "cluster",
    ...common,
    ...setup,
    ...(options.clusterArgs ?? []),
  ]);
  await supervisor.waitFor(/fts cluster: ready/, 60_000);
  const cluster: TestCluster = {
    dir,
    work,
    basePort,
    ports,
    supervisor,
    fts: (args, opts) => runFts([...args, ...common], opts),
    spawnFetch: (name, dest, extra = []) =>
      new FtsProcess(["fetch", name, dest, ...common, ...extra]),
    async kill(port) {
      const result = await runFts(["kill", String(port), ...common]);
      if (result.code !== 0) throw new Error(`kill ${port} failed: ${result.stderr}`);
    },
    async start(port) {
      const result = await runFts(["start", String(port), ...common]);
      if (result.code !== 0) throw new Error(`start ${port} failed: ${result.stderr}`);
    },
    async bytesServed() {
      let total = 0;
      for (const port of ports) {
        try {
          total += (await instanceStats(`127.0.0.1:${port}`)).bytesServed ?? 0;
        } catch { /* down */ }
      }
      return total;
    },
    async stop() {
      supervisor.kill("SIGTERM");
      await supervisor.status;
      await Deno.remove(work, { recursive: true }).catch(() => {});
    },
  };
  return cluster;
}

/** Runs `program ARGS...`, throwing with its standard error unless it exits 0 (mount, umount). */
export async function mustRun(program: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${program} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A new, empty destination directory in the cluster's work directory. */
export async function newDest(cluster: TestCluster): Promise<string> {
  const dest = join(cluster.work, `dest-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dest);
  return dest;
}

/** Runs `fts fetch NAME DEST --json`, which must succeed; returns its summary. */
export async function fetchJson(
  cluster: TestCluster,
  name: string,
  dest: string,
  extra: string[] = [],
) {
  const result = await cluster.fts(["fetch", name, dest, "--json", ...extra]);
  if (result.code !== 0) throw new Error(`fetch ${name} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as {
    bytesReceived: number;
    partsPresent: number;
    bytesChecked: number;
    partsFetched: number;
    bytesPresent: number;
    parts: number;
    size: number;
  };
}
