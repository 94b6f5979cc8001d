/**
 * Running `fts` as a child process, for the tests and the benchmark alike:
 * `deno run main.ts` with piped output drained so the child never blocks, no
 * standard input, no inherited FTS_* setting and a private config directory;
 * to completion (runFts) or kept running and searched (FtsProcess); and an
 * instance's counters asked over the wire (instanceStats).
 */
import { fileURLToPath } from "node:url";
import { Peer } from "../lib/client/peer.ts";
import { childEnv } from "./measure.ts";
import { DrainedProcess } from "./drained_process.ts";

export { DrainedProcess } from "./drained_process.ts";

export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
export const DENO = Deno.execPath();
/** Longest a runFts() child may run before it is killed. */
const RUN_TIMEOUT_MS = 120_000;
/** How long instanceStats() waits for the instance to accept, then to answer. */
const STATS_CONNECT_TIMEOUT_MS = 2_000;
const STATS_STALL_TIMEOUT_MS = 5_000;

/** A config directory of this process, so no test or benchmark touches the user's ~/.config. */
const _configHome = Deno.makeTempDirSync({ prefix: "fts-test-config-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(_configHome, { recursive: true });
  } catch { /* already gone */ }
});

/** Environment for fts children: no inherited FTS_* setting, no user config, then `extra`. */
function _env(extra: Record<string, string> = {}): Record<string, string> {
  return { ...childEnv(), XDG_CONFIG_HOME: _configHome, ...extra };
}

/** How to start fts; `denoFlags` go to `deno run` (a test takes a permission away, say). */
export interface FtsSpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  denoFlags?: string[];
  /** A command that runs the rest, e.g. `ip netns exec NS` for a test host. */
  prefix?: string[];
}

/** Starts `fts ARGS...` with its output piped and no standard input, as runFts() does. */
export function spawnFts(args: string[], options: FtsSpawnOptions = {}): Deno.ChildProcess {
  const [program, ...before] = [...(options.prefix ?? []), DENO];
  return new Deno.Command(program!, {
    args: [
      ...before,
      "run",
      "--allow-all",
      "--quiet",
      ...(options.denoFlags ?? []),
      MAIN,
      ...args,
    ],
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
  options: FtsSpawnOptions & { timeoutMs?: number } = {},
): Promise<RunResult> {
  return await outputWithin(spawnFts(args, options), options.timeoutMs ?? RUN_TIMEOUT_MS);
}

/** SIGKILLs `child` if it still runs after `timeoutMs`; clearTimeout() of the result cancels. */
export function killAfter(
  child: Deno.ChildProcess,
  timeoutMs: number,
): ReturnType<typeof setTimeout> {
  return setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, timeoutMs);
}

/** A child's exit code and output; it is killed if it runs over `timeoutMs`. */
export async function outputWithin(
  child: Deno.ChildProcess,
  timeoutMs: number,
): Promise<RunResult> {
  const timer = killAfter(child, timeoutMs);
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
export class FtsProcess extends DrainedProcess {
  constructor(args: string[], options: FtsSpawnOptions = {}) {
    super(spawnFts(args, options));
  }
}

/** Asks one instance for its counters. */
export async function instanceStats(address: string): Promise<Record<string, number>> {
  const peer = await Peer.connect(address, {
    connectTimeoutMs: STATS_CONNECT_TIMEOUT_MS,
    stallTimeoutMs: STATS_STALL_TIMEOUT_MS,
  });
  try {
    return await peer.stats() as Record<string, number>;
  } finally {
    peer.close();
  }
}
