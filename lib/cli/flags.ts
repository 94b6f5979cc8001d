/** Shared pieces of the command-line layer: flag parsing and output helpers. */
import { checkHostAddress } from "../etcd/host_address.ts";
import {
  CLUSTER_NAME,
  DEFAULT_CLUSTER_NAME,
  ETCD_CA_ENV,
  type EtcdTarget,
  parseEtcdEndpoints,
} from "../etcd/etcd_keys.ts";
import { type ClusterConfig, dataPaths, MAX_SERVERS } from "../state/config.ts";
import { etcdHostPath } from "../state/manifest_guard.ts";
import { UsageError } from "../wire/errors.ts";
import { parseDurationMs, parseSize } from "../base/units.ts";
import { closestMatch } from "../base/closest_match.ts";
import { resolve } from "../base/paths.ts";

export { isTerminal } from "../base/terminal.ts";

type FlagSpec = {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
};

export type ParsedFlags = {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
  /** The long names of the flags the command takes (for "did you mean --x?"). */
  known?: readonly string[];
};

/**
 * Parses flags strictly: unknown flags and missing values are usage errors.
 * The rules are node:util's parseArgs in strict mode with positionals allowed
 * (which fts used before; `fts serve` must not load node:util, to keep instances small):
 * `--name value`, `--name=value`, `-q`, grouped `-qw`, `-xVALUE` for a short
 * string flag, the last of repeated flags wins unless `multiple`, and `--`
 * makes everything after it positional. A value that looks like a flag must be
 * attached with "=", so that a forgotten value does not swallow the next flag.
 */
export function parseFlags(args: string[], spec: Record<string, FlagSpec>): ParsedFlags {
  const options: Record<string, FlagSpec> = { ...spec, help: { type: "boolean", short: "h" } };
  const longOf = new Map<string, string>();
  for (const [name, option] of Object.entries(options)) {
    if (option.short !== undefined) longOf.set(option.short, name);
  }
  const values: ParsedFlags["values"] = Object.create(null);
  const positionals: string[] = [];
  const pending = [...args];
  /** Records flag `name` (written as `flag`) with its attached value, if any. */
  const take = (flag: string, name: string, attached: string | undefined): void => {
    const option = Object.hasOwn(options, name) ? options[name] : undefined;
    if (option === undefined) {
      const known = [...Object.keys(spec), "help", "verbose"];
      const suggestion = closestMatch(flag.replace(/^-+/, ""), known);
      throw new UsageError(
        `Unknown flag ${flag}${suggestion ? `; did you mean --${suggestion}?` : ""}` +
          " (--help lists the flags)",
      );
    }
    let value: string | boolean;
    if (option.type === "boolean") {
      if (attached !== undefined) throw new UsageError(`${flag} takes no value`);
      value = true;
    } else if (attached !== undefined) {
      value = attached;
    } else {
      const next = pending.shift();
      if (next === undefined) throw new UsageError(`${flag} needs a value`);
      if (next.length > 1 && next.startsWith("-")) {
        throw new UsageError(
          `${flag} needs a value, got the flag-like ${JSON.stringify(next)}` +
            ` (write --${name}=${next} if that is the value)`,
        );
      }
      value = next;
    }
    const earlier = values[name];
    values[name] = !option.multiple
      ? value
      : [...(Array.isArray(earlier) ? earlier : []), value] as string[] | boolean[];
  };
  while (pending.length > 0) {
    const arg = pending.shift()!;
    if (arg === "--") {
      positionals.push(...pending);
      break;
    }
    if (arg.startsWith("--")) {
      // A name is one character at least: "--=x" is the (unknown) flag "=x", as for node:util.
      const eq = arg.indexOf("=", 3);
      const name = arg.slice(2, eq === -1 ? undefined : eq);
      take(`--${name}`, name, eq === -1 ? undefined : arg.slice(eq + 1));
    } else if (arg.length < 2 || !arg.startsWith("-")) {
      positionals.push(arg);
    } else {
      // Short flags: -q, -qw (booleans), -xVALUE or -qxVALUE (x a string flag).
      const char = arg[1]!;
      const name = longOf.get(char) ?? char;
      const rest = arg.slice(2);
      if (rest !== "" && Object.hasOwn(options, name) && options[name]!.type === "boolean") {
        pending.unshift(`-${char}`, `-${rest}`);
      } else {
        take(`-${char}`, name, rest === "" ? undefined : rest);
      }
    }
  }
  return { values, positionals, known: Object.keys(spec) };
}

export function stringFlag(flags: ParsedFlags, name: string): string | undefined {
  const value = flags.values[name];
  return typeof value === "string" ? value : undefined;
}

export function listFlag(flags: ParsedFlags, name: string): string[] {
  const value = flags.values[name];
  return Array.isArray(value) ? value.map(String) : typeof value === "string" ? [value] : [];
}

export function boolFlag(flags: ParsedFlags, name: string): boolean {
  return flags.values[name] === true;
}

/** An integer flag within bounds, or undefined when absent. */
export function intFlag(
  flags: ParsedFlags,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

export function sizeFlag(flags: ParsedFlags, name: string): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  try {
    return parseSize(text);
  } catch (cause) {
    throw new UsageError(`--${name}: ${(cause as Error).message}`, { cause });
  }
}

export function durationFlag(
  flags: ParsedFlags,
  name: string,
  /** The shortest allowed, in ms (a timeout of 0 or 1 ms cuts off every exchange). */
  minMs = 0,
): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  let ms: number;
  try {
    ms = parseDurationMs(text);
  } catch (cause) {
    throw new UsageError(`--${name}: ${(cause as Error).message}`, { cause });
  }
  if (ms < minMs) throw new UsageError(`--${name} must be at least ${minMs}ms, got ${text}`);
  return ms;
}

/** The shortest timeout an instance or gateway takes for its connections. */
export const MIN_CONNECTION_TIMEOUT_MS = 100;

/** The shortest --timeout (a stall timeout) a transfer takes: 0 would wait forever. */
export const MIN_STALL_TIMEOUT_MS = 100;

/** `--timeout`: how long an instance may stay silent before a transfer moves on. */
export function stallTimeoutFlag(flags: ParsedFlags): number | undefined {
  const ms = durationFlag(flags, "timeout");
  if (ms !== undefined && ms < MIN_STALL_TIMEOUT_MS) {
    throw new UsageError(
      `--timeout must be at least ${MIN_STALL_TIMEOUT_MS}ms: it is how long an instance may ` +
        `stay silent before the transfer moves on to another (0 would wait forever)`,
    );
  }
  return ms;
}

/** Throws a usage error unless the positional count is within bounds. */
export function expectPositionals(
  flags: ParsedFlags,
  min: number,
  max: number,
  usage: string,
): string[] {
  const { positionals } = flags;
  if (positionals.length < min) throw new UsageError(`Missing argument; usage: ${usage}`);
  if (positionals.length > max) {
    // "fts repair dry-run": a flag written without its dashes must not run the command.
    const bare = positionals.slice(max).find((word) => flags.known?.includes(word));
    throw new UsageError(
      bare !== undefined
        ? `Unexpected argument ${JSON.stringify(bare)}; did you mean --${bare}? usage: ${usage}`
        : max === 0
        ? `Unexpected argument ${JSON.stringify(positionals[0])}; usage: ${usage}`
        : `Too many arguments; usage: ${usage}`,
    );
  }
  return positionals;
}

const encoder = new TextEncoder();

/** Writes to stderr without a newline (for progress lines). */
export function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** The port flag of kill/start: a positional PORT. */
export function parsePort(text: string | undefined): number {
  const port = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new UsageError(`Expected a port number from 1 to 65535, got "${text ?? ""}"`);
  }
  return port;
}

/**
 * The flags of the commands that create a cluster (cluster, preload): its data
 * directory and shape; clusterFlags reads the shape.
 */
export const CLUSTER_FLAGS = {
  data: { type: "string" },
  servers: { type: "string" },
  "base-port": { type: "string" },
  replicas: { type: "string" },
  host: { type: "string" },
} as const;

/** The cluster-shape flags shared by preload and cluster: only those given. */
export function clusterFlags(flags: ParsedFlags): Partial<ClusterConfig> {
  const requested: Partial<ClusterConfig> = {};
  const servers = intFlag(flags, "servers", 1, MAX_SERVERS);
  const basePort = intFlag(flags, "base-port", 1, 65535);
  const replicas = intFlag(flags, "replicas", 1, MAX_SERVERS);
  const host = stringFlag(flags, "host");
  if (servers !== undefined) requested.servers = servers;
  if (basePort !== undefined) requested.basePort = basePort;
  if (replicas !== undefined) requested.replicas = replicas;
  if (host !== undefined) {
    // Checked before it is recorded: the instances of a data directory listen
    // on this machine. A wildcard is fine here: each listens on every address.
    if (host !== "0.0.0.0") checkHostAddress(host);
    requested.host = host;
  }
  return requested;
}

/** The flags every signing command (upload, rm, mv) takes, besides its own. */
export const SIGNING_FLAGS = {
  data: { type: "string" },
  server: { type: "string", multiple: true },
  identity: { type: "string" },
  operator: { type: "boolean" },
  "tls-ca": { type: "string" },
  etcd: { type: "string" },
  cluster: { type: "string" },
  "etcd-ca": { type: "string" },
} as const;

/** What the signing flags say: data directory, servers, identity file, --operator, the CA. */
export function signingFlags(flags: ParsedFlags): {
  dataDir: string | undefined;
  servers: string[];
  identity: string | undefined;
  operator: boolean;
  tlsCa: string | undefined;
  etcd: EtcdTarget | undefined;
} {
  return {
    dataDir: stringFlag(flags, "data"),
    servers: listFlag(flags, "server"),
    identity: stringFlag(flags, "identity"),
    operator: boolFlag(flags, "operator"),
    tlsCa: stringFlag(flags, "tls-ca"),
    etcd: etcdTarget(flags),
  };
}

/** The flags that point a command at a cluster in etcd. */
export const ETCD_FLAGS = {
  etcd: { type: "string" },
  cluster: { type: "string" },
  "etcd-ca": { type: "string" },
} as const;

/**
 * An FTS_ETCD exported for one cluster must not take over a command whose
 * --data names a single-host cluster (its config.json, and no mark of a host
 * of a cluster in etcd): that flag said which cluster, and acting on the
 * other one without a word lists, changes or preloads the wrong files.
 */
function _refuseEtcdOverData(flags: ParsedFlags, urls: string): void {
  const data = stringFlag(flags, "data");
  if (stringFlag(flags, "etcd") !== undefined || data === undefined || data.trim() === "") return;
  const exists = (path: string) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  };
  if (!exists(dataPaths(data).config) || exists(etcdHostPath(data))) return;
  throw new UsageError(
    `--data ${data} holds a single-host cluster, but FTS_ETCD (${urls}) names a cluster in ` +
      `etcd: for the one in ${data}, unset FTS_ETCD (FTS_ETCD= fts ...); for the one in etcd, ` +
      `drop --data`,
  );
}

/** The etcd target the flags name, or undefined when neither --etcd nor FTS_ETCD is given. */
export function etcdTarget(
  flags: ParsedFlags,
  /** Whether --data naming a single-host cluster is what the command moves into etcd (migrate). */
  options: { dataIsSource?: boolean } = {},
): EtcdTarget | undefined {
  // An empty FTS_ETCD is no etcd; an empty --etcd is a mistake worth saying.
  if (stringFlag(flags, "etcd")?.trim() === "") {
    throw new UsageError("--etcd needs URLS: http://HOST:2379[,http://HOST:2379...]");
  }
  const urls = stringFlag(flags, "etcd") ?? Deno.env.get("FTS_ETCD");
  const cluster = stringFlag(flags, "cluster") ?? Deno.env.get("FTS_CLUSTER");
  if (urls === undefined || urls === "") {
    if (stringFlag(flags, "cluster") !== undefined) {
      throw new UsageError("--cluster names a cluster in etcd: give --etcd URLS too");
    }
    return undefined;
  }
  if (!options.dataIsSource) _refuseEtcdOverData(flags, urls);
  const ca = stringFlag(flags, "etcd-ca");
  // Through the environment, so that every process this one starts (the
  // instances of fts cluster, its gateway) reaches etcd the same way.
  if (ca !== undefined) Deno.env.set(ETCD_CA_ENV, resolve(ca));
  const name = cluster ?? DEFAULT_CLUSTER_NAME;
  if (!CLUSTER_NAME.test(name)) {
    throw new UsageError(
      `--cluster ${JSON.stringify(name)} must be lowercase letters, digits, ".", "_" or "-"`,
    );
  }
  const source = stringFlag(flags, "etcd") !== undefined ? "--etcd" : "FTS_ETCD";
  return { endpoints: parseEtcdEndpoints(urls, source), cluster: name };
}
