/**
 * What the instance V8 flags cost the data path: one instance (R=1) serves a
 * 1 GiB fetch, then receives a 1 GiB upload of new bytes, started with and
 * without INSTANCE_V8_FLAGS in turns; reports wall times, the instance's CPU
 * seconds (utime + stime from /proc/PID/stat, which a busy machine disturbs
 * less than wall time) per GiB sent and received, and its peak VmRSS. Linux
 * only.
 *
 *     deno run -A bench/instance_flags.ts [--rounds 5]
 */
import { parseArgs } from "node:util";
import { DENO_RUN_FLAGS, INSTANCE_V8_FLAGS } from "../lib/base/spawn.ts";
import { writeRandomFile } from "./data_files.ts";
import { childEnv } from "./measure.ts";
import { DrainedProcess } from "./drained_process.ts";
import { MAIN } from "./fts_process.ts";
import { freePortRange } from "./port_claims.ts";

/** Bytes of the file fetched and of each file uploaded. */
const FILE_BYTES = 1024 ** 3;
/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ). */
const CLOCK_TICKS_PER_SECOND = 100;
const DEFAULT_ROUNDS = 5;

const VARIANTS: [string, string[]][] = [["no flags", []], ["instance flags", [
  INSTANCE_V8_FLAGS,
]]];

/** Runs `fts ARGS...` to completion; its wall time in seconds. */
async function _fts(args: string[], env: Record<string, string>): Promise<number> {
  const start = performance.now();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...DENO_RUN_FLAGS, MAIN, ...args],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`fts ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return (performance.now() - start) / 1000;
}

/** CPU seconds the process has used. */
function _cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

function _peakMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1000;
}

interface _Round {
  fetchS: number;
  uploadS: number;
  sentCpuS: number;
  receivedCpuS: number;
  peakMb: number;
}

async function _round(
  flags: string[],
  port: number,
  root: string,
  seed: number,
  env: Record<string, string>,
): Promise<_Round> {
  const dir = `${root}/data`;
  const args = ["run", ...DENO_RUN_FLAGS, ...flags, MAIN, "serve", "--port", String(port)];
  const child = new DrainedProcess(
    new Deno.Command(Deno.execPath(), {
      args: [...args, "--data", dir],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  try {
    await child.waitFor(/ready: /);
    const dest = `${root}/dest`;
    await Deno.remove(dest, { recursive: true }).catch(() => {});
    await Deno.mkdir(dest);
    const before = _cpuSeconds(child.pid);
    const fetchS = await _fts(["fetch", "big.bin", dest, "--server", `127.0.0.1:${port}`], env);
    const sent = _cpuSeconds(child.pid);
    // New bytes each round, so that no part of the upload is already stored.
    const upload = `${root}/upload.bin`;
    await writeRandomFile(upload, FILE_BYTES, seed);
    const ready = _cpuSeconds(child.pid);
    const uploadS = await _fts(
      ["upload", upload, "--as", `upload-${seed}.bin`, "--data", dir],
      env,
    );
    return {
      fetchS,
      uploadS,
      sentCpuS: sent - before,
      receivedCpuS: _cpuSeconds(child.pid) - ready,
      peakMb: _peakMb(child.pid),
    };
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

function _median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

if (import.meta.main) {
  const args = parseArgs({ args: Deno.args, options: { rounds: { type: "string" } } });
  const rounds = Number(args.values.rounds ?? DEFAULT_ROUNDS);
  const port = freePortRange(1);
  const root = await Deno.makeTempDir({ prefix: "fts-bench-flags-" });
  try {
    const env = { ...childEnv(), FTS_IDENTITY: `${root}/identity.json` };
    await writeRandomFile(`${root}/big.bin`, FILE_BYTES);
    await _fts([
      "preload",
      `${root}/big.bin`,
      "--servers",
      "1",
      "--replicas",
      "1",
      "--base-port",
      String(port),
      "--data",
      `${root}/data`,
    ], env);
    const results = new Map<string, _Round[]>(VARIANTS.map(([label]) => [label, []]));
    for (let round = 0; round < rounds; round++) {
      for (const [i, [label, flags]] of VARIANTS.entries()) {
        const seed = 2 + round * VARIANTS.length + i;
        const run = await _round(flags, port, root, seed, env);
        results.get(label)!.push(run);
        console.error(`round ${round + 1}, ${label}: ${JSON.stringify(run)}`);
      }
    }
    console.log(
      "| instance | fetch 1 GiB (s) | upload 1 GiB (s) | CPU s per GiB sent | CPU s per GiB received | VmHWM (MB) |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (const [label, runs] of results) {
      const median = (key: keyof _Round) => _median(runs.map((run) => run[key]));
      console.log(
        `| ${label} | ${median("fetchS").toFixed(2)} | ${median("uploadS").toFixed(2)} | ${
          median("sentCpuS").toFixed(2)
        } | ${median("receivedCpuS").toFixed(2)} | ${median("peakMb").toFixed(1)} |`,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
