import { UsageError } from "../wire/errors.ts";
import { exists, readJsonFile, writeFileAtomic } from "../base/fs_util.ts";
import { clusterIdPath, createClusterIdLocked } from "./cluster_id.ts";
import { createEmptyManifest } from "./manifest_guard.ts";
import { withFileLock } from "../base/lock.ts";
import { isAbsolute, join, resolve } from "../base/paths.ts";
import { formatBytes } from "../base/units.ts";

/** What the first command that creates a data directory records in it. */
export interface ClusterConfig {
  host: string;
  basePort: number;
  servers: number;
  replicas: number;
  partSize: number;
}

export const CONFIG_FORMAT = "fts-config";
export const CONFIG_VERSION = 1;

export const DEFAULT_CONFIG: Readonly<ClusterConfig> = {
  host: "127.0.0.1",
  basePort: 9001,
  servers: 50,
  replicas: 5,
  partSize: 8 * 1024 * 1024,
};

export const MIN_PART_BYTES = 4 * 1024;
export const MAX_PART_BYTES = 256 * 1024 * 1024;
export const MAX_SERVERS = 1000;

/** Where everything of one data directory lives. Instance ids are port numbers. */
export function dataPaths(dir: string) {
  return {
    dir,
    config: join(dir, "config.json"),
    /** Serialises creating the config (and the file manifest store's changes). */
    lock: join(dir, "manifest.lock"),
    runDir: join(dir, "run"),
    logDir: join(dir, "logs"),
    clusterFile: join(dir, "run", "cluster.json"),
    /** Locked (flock) by the running supervisor for as long as it lives. */
    supervisorLock: join(dir, "run", "supervisor.lock"),
    /** The flags the last cluster gave its instances, for `fts start` without one (serve_flags.ts). */
    serveFlags: join(dir, "serve_flags.json"),
    instanceDir: (id: string) => join(dir, "instances", id),
    pidFile: (id: string) => join(dir, "run", `${id}.pid`),
    logFile: (id: string) => join(dir, "logs", `${id}.log`),
    /** The operator's key pair: whoever can read it owns the preloaded files. */
    operatorIdentity: join(dir, "operator_identity.json"),
    /** Nonces of signed requests already used, shared by every instance. */
    noncesDir: join(dir, "nonces"),
  };
}

/** The data directory from `--data`, then FTS_DATA, then ./fts-data; always absolute. */
export function resolveDataDir(flag: string | undefined): string {
  // An empty --data would make the current directory the data directory, and
  // fill it with the cluster's files: a mistake (an unset shell variable).
  // An empty FTS_DATA is unset, as an empty FTS_ETCD is.
  if (flag !== undefined && flag.trim() === "") {
    throw new UsageError("--data needs a directory (DIR; the default is ./fts-data)");
  }
  const env = Deno.env.get("FTS_DATA");
  const chosen = flag ?? (env?.trim() ? env : undefined) ?? "fts-data";
  const dir = isAbsolute(chosen) ? chosen : resolve(Deno.cwd(), chosen);
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(dir);
  } catch {
    // Not there yet (made on first use), or not to be looked at: the command says.
  }
  if (info && !info.isDirectory) {
    const source = flag !== undefined
      ? "--data"
      : chosen === env
      ? "FTS_DATA"
      : "The data directory";
    throw new UsageError(`${source} ${dir} is not a directory: give the cluster's data directory`);
  }
  return dir;
}

export function validateConfig(config: ClusterConfig): ClusterConfig {
  const { servers, basePort, replicas, partSize } = config;
  if (!Number.isInteger(servers) || servers < 1 || servers > MAX_SERVERS) {
    throw new UsageError(`--servers must be 1..${MAX_SERVERS}, got ${servers}`);
  }
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + servers - 1 > 65535) {
    throw new UsageError(
      `--base-port ${basePort} with ${servers} servers does not fit in ports 1..65535`,
    );
  }
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > servers) {
    throw new UsageError(`--replicas must be 1..${servers} (the server count), got ${replicas}`);
  }
  if (!Number.isInteger(partSize) || partSize < MIN_PART_BYTES || partSize > MAX_PART_BYTES) {
    throw new UsageError(
      `--part-size must be ${formatBytes(MIN_PART_BYTES)}..${formatBytes(MAX_PART_BYTES)}, got ${
        formatBytes(partSize) === formatBytes(MIN_PART_BYTES) ||
          formatBytes(partSize) === formatBytes(MAX_PART_BYTES)
          ? `${partSize} bytes`
          : formatBytes(partSize)
      }`,
    );
  }
  if (typeof config.host !== "string" || config.host.length === 0) {
    throw new UsageError(`--host must be a host name or address`);
  }
  return config;
}

function _parseConfig(value: unknown, path: string): ClusterConfig {
  const v = value as Record<string, unknown> | null;
  if (
    typeof v !== "object" || v === null || v.format !== CONFIG_FORMAT ||
    v.version !== CONFIG_VERSION
  ) {
    throw new SyntaxError(`${path} is not an fts config (format ${CONFIG_FORMAT} v1)`);
  }
  const config = {
    host: v.host,
    basePort: v.basePort,
    servers: v.servers,
    replicas: v.replicas,
    partSize: v.partSize,
  } as ClusterConfig;
  try {
    return validateConfig(config);
  } catch (cause) {
    throw new SyntaxError(`${path} holds an invalid config`, { cause });
  }
}

/** Reads the config of a data directory, or undefined when it has none yet. */
export async function loadConfig(dir: string): Promise<ClusterConfig | undefined> {
  const path = dataPaths(dir).config;
  let value: unknown;
  try {
    value = await readJsonFile(path);
  } catch (cause) {
    if (cause instanceof Deno.errors.NotADirectory) {
      throw new UsageError(`--data ${dir} is not a directory: give the cluster's data directory`, {
        cause,
      });
    }
    throw cause;
  }
  return value === undefined ? undefined : _parseConfig(value, path);
}

const FLAG_NAMES: Record<keyof ClusterConfig, string> = {
  host: "--host",
  basePort: "--base-port",
  servers: "--servers",
  replicas: "--replicas",
  partSize: "--part-size",
};

/**
 * The config ensureConfig() would return, with nothing written: the recorded
 * one (flags that contradict it are an error), or the flags and defaults.
 */
export async function plannedConfig(
  dir: string,
  flags: Partial<ClusterConfig>,
): Promise<ClusterConfig> {
  const existing = await loadConfig(dir);
  if (!existing) return validateConfig({ ...DEFAULT_CONFIG, ...flags });
  checkFlagsAgainst(existing, flags, dir);
  return existing;
}

/**
 * Returns the directory's config, creating it from the flags (and defaults)
 * when it does not exist. Flags that contradict a recorded config are an error.
 * `partSize` is only a default for preload, so it never contradicts.
 */
export async function ensureConfig(
  dir: string,
  flags: Partial<ClusterConfig>,
  options: { manifest?: boolean } = {},
): Promise<ClusterConfig> {
  const paths = dataPaths(dir);
  // Flags that cannot make a cluster leave no directory behind either.
  if (!(await exists(paths.config))) validateConfig({ ...DEFAULT_CONFIG, ...flags });
  await Deno.mkdir(dir, { recursive: true });
  return await withFileLock(paths.lock, async () => {
    const existing = await loadConfig(dir);
    if (existing) {
      checkFlagsAgainst(existing, flags, dir);
      return existing;
    }
    const config = validateConfig({ ...DEFAULT_CONFIG, ...flags });
    // From now on a missing manifest is a lost one (manifest_guard.ts); a
    // host of a cluster in etcd keeps none.
    if (options.manifest ?? true) await createEmptyManifest(dir);
    if (!(await exists(clusterIdPath(dir)))) await createClusterIdLocked(dir);
    await writeFileAtomic(
      paths.config,
      JSON.stringify({ format: CONFIG_FORMAT, version: CONFIG_VERSION, ...config }, null, 2) +
        "\n",
    );
    return config;
  });
}

export function checkFlagsAgainst(
  existing: ClusterConfig,
  flags: Partial<ClusterConfig>,
  dir: string,
): void {
  for (const key of ["host", "basePort", "servers", "replicas"] as const) {
    const wanted = flags[key];
    if (wanted !== undefined && wanted !== existing[key]) {
      throw new UsageError(
        `${FLAG_NAMES[key]} ${wanted} contradicts the cluster recorded in ${dir} ` +
          `(${FLAG_NAMES[key]} ${existing[key]}); drop the flag or use another --data`,
      );
    }
  }
}

/** Loads the config or explains how to make one. */
export async function requireConfig(dir: string): Promise<ClusterConfig> {
  const config = await loadConfig(dir);
  if (!config) {
    throw new UsageError(
      `No cluster in ${dir}: run "fts preload FILE" or "fts cluster" first, or pass --data DIR`,
    );
  }
  return config;
}

export function instancePorts(config: ClusterConfig): number[] {
  return Array.from({ length: config.servers }, (_, i) => config.basePort + i);
}

export function instanceIds(config: ClusterConfig): string[] {
  return instancePorts(config).map(String);
}

export function instanceAddress(config: ClusterConfig, id: string): string {
  return `${config.host}:${id}`;
}
