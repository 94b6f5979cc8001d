/**
 * The shared test harness: real `fts` processes on loopback, free port ranges
 * checked before use, output drained so children never block, and helpers to
 * make, compare and damage files.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadFetchState } from "../lib/client/fetch_state.ts";
import { Peer } from "../lib/client/peer.ts";
import { findFreePortRange } from "../lib/base/ports.ts";
import { unusableTool } from "./missing_tool.ts";
import { claimPortRange } from "./port_claims.ts";

export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
export const DENO = Deno.execPath();

/** A config directory of this test process, so no test touches the user's ~/.config. */
const _configHome = Deno.makeTempDirSync({ prefix: "fts-test-config-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(_configHome, { recursive: true });
  } catch { /* already gone */ }
});

/** Environment for child processes: no inherited FTS_* settings leak into tests. */
function _env(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("FTS_")) env[key] = value;
  }
  return {
    ...env,
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    XDG_CONFIG_HOME: _configHome,
    ...extra,
  };
}

export async function tempDir(prefix = "fts-test-"): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/**
 * A run of `count` consecutive loopback ports that are free right now and not
 * claimed by another test, in any module or test process (port_claims.ts:
 * a killed instance's port is free, not unused). lib/base/ports.ts picks random bases
 * below the kernel's ephemeral range, so a killed instance's port is not taken
 * as some connection's source port before it restarts.
 */
export function freePortRange(count: number): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = findFreePortRange(count);
    if (claimPortRange(base, count)) return base;
  }
  throw new Error(`No free range of ${count} ports found`);
}

/** How tests start fts; `denoFlags` go to `deno run` (a test takes a permission away, say). */
interface _SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  denoFlags?: string[];
}

/** Starts `fts ARGS...` with piped output and no standard input. */
function _spawnFts(args: string[], options: _SpawnOptions): Deno.ChildProcess {
  return new Deno.Command(DENO, {
    args: ["run", "--allow-all", "--quiet", ...(options.denoFlags ?? []), MAIN, ...args],
    cwd: options.cwd ?? Deno.cwd(),
    env: _env(options.env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `fts ARGS...` to completion. */
export async function runFts(
  args: string[],
  options: _SpawnOptions & { timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = _spawnFts(args, options);
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, options.timeoutMs ?? 120_000);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** A long-running `fts` child whose output is drained into memory and searchable. */
export class FtsProcess {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #waiters = new Set<() => void>();
  readonly status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<unknown>;

  constructor(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
    this.child = _spawnFts(args, options);
    const drain = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this[key] += decoder.decode(chunk, { stream: true });
        for (const wake of this.#waiters) wake();
      }
    };
    this.#drained = Promise.all([
      drain(this.child.stdout, "stdout"),
      drain(this.child.stderr, "stderr"),
    ]).catch(() => {});
    this.status = this.child.status.then(async (status) => {
      await this.#drained;
      for (const wake of this.#waiters) wake();
      return status;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until stdout+stderr match `pattern`; throws with the output on timeout or exit. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.status.then(() => (exited = true));
    while (true) {
      const match = (this.stdout + this.stderr).match(pattern);
      if (match) return match;
      if (exited) {
        throw new Error(`Process exited before ${pattern}:\n${this.stdout}\n${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out waiting for ${pattern}:\n${this.stdout}\n${this.stderr}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 200));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch { /* exited */ }
  }

  async result(): Promise<RunResult> {
    const status = await this.status;
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }
}

/** Writes `size` bytes of seeded pseudo-random data (xorshift), streaming. */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(1024 * 1024);
    const words = new Uint32Array(chunk.buffer);
    let x = (seed * 2654435761) >>> 0 || 1;
    let written = 0;
    while (written < size) {
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x >>>= 0;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        words[i] = x;
      }
      const n = Math.min(chunk.length, size - written);
      let done = 0;
      while (done < n) done += await file.write(chunk.subarray(done, n));
      written += n;
    }
  } finally {
    file.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(1024 * 1024);
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** Asserts two files are byte-identical (size and SHA-256). */
export async function assertSameFile(actual: string, expected: string): Promise<void> {
  const [a, b] = await Promise.all([Deno.stat(actual), Deno.stat(expected)]);
  if (a.size !== b.size) throw new Error(`${actual} has ${a.size} bytes, expected ${b.size}`);
  const [ha, hb] = await Promise.all([sha256File(actual), sha256File(expected)]);
  if (ha !== hb) throw new Error(`${actual} differs from ${expected}`);
}

/** Overwrites `length` bytes at `offset` with different bytes (each byte inverted). */
export async function damageFile(path: string, offset: number, length: number): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    const buffer = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await file.read(buffer.subarray(got));
      if (n === null) break;
      got += n;
    }
    for (let i = 0; i < got; i++) buffer[i] = buffer[i]! ^ 0xff;
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < got) done += await file.write(buffer.subarray(done, got));
  } finally {
    file.close();
  }
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

/** Reads the manifest JSON of a data directory. */
export async function readManifestJson(dataDir: string): Promise<{
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
  return JSON.parse(await Deno.readTextFile(join(dataDir, "manifest.json")));
}

/**
 * Rewrites one file's entry in the manifest of a data directory, as a new file
 * (renamed over the old one), so the instances re-read it.
 */
export async function editManifestEntry(
  dataDir: string,
  name: string,
  edit: (parts: Record<string, unknown>[]) => void,
): Promise<void> {
  const path = join(dataDir, "manifest.json");
  const manifest = JSON.parse(await Deno.readTextFile(path));
  edit(manifest.files[name].parts);
  await Deno.writeTextFile(path + ".edit", JSON.stringify(manifest));
  await Deno.rename(path + ".edit", path);
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

/** Asks one instance for its counters. */
export async function instanceStats(address: string): Promise<Record<string, number>> {
  const peer = await Peer.connect(address, { connectTimeoutMs: 2_000, stallTimeoutMs: 5_000 });
  try {
    return await peer.stats() as Record<string, number>;
  } finally {
    peer.close();
  }
}

export interface TestCluster {
  dir: string;
  work: string;
  basePort: number;
  ports: number[];
  supervisor: FtsProcess;
  /** Runs an fts command against this cluster's data directory. */
  fts(args: string[], options?: _SpawnOptions): Promise<RunResult>;
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
