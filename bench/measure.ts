/**
 * Running a command for the benchmark: wall time, exit code, output and the
 * peak resident memory of the process; medians over runs.
 */

/** Reports the child's peak resident set size (ru_maxrss) when installed. */
export const TIME_PROGRAM = "/usr/bin/time";

export interface Outcome {
  seconds: number;
  code: number;
  stdout: string;
  stderr: string;
  /** Peak resident memory of the process in bytes, when /usr/bin/time could tell. */
  peakRssBytes: number | undefined;
}

/** The environment for children: no FTS_* setting of the caller changes what is measured. */
export function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (!key.startsWith("FTS_")) env[key] = value;
  }
  // No look-up of Deno's release server from the processes measured.
  return { ...env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
}

function _haveTime(): boolean {
  try {
    return Deno.statSync(TIME_PROGRAM).isFile;
  } catch {
    return false;
  }
}

/** Starts a child with childEnv(), no stdin, and stdout and stderr piped (the caller drains them). */
export function spawnPiped(program: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(program, {
    args,
    env: childEnv(),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

export interface RunOptions {
  timeoutMs?: number;
  /** Runs alongside the command (to disturb or watch it); awaited before returning. */
  during?: (() => Promise<void>) | undefined;
  /** Called as soon as the command has exited. */
  onExit?: () => void;
}

/** Runs `program args...` to completion and times it from spawn to exit. */
export async function runTimed(
  program: string,
  args: string[],
  options: RunOptions = {},
): Promise<Outcome> {
  const rssFile = _haveTime() ? await Deno.makeTempFile({ prefix: "fts-bench-rss-" }) : undefined;
  const argv = rssFile ? [TIME_PROGRAM, "-f", "%M", "-o", rssFile, program, ...args] : [
    program,
    ...args,
  ];
  const started = performance.now();
  const child = spawnPiped(argv[0]!, argv.slice(1));
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, options.timeoutMs ?? 600_000);
  void child.status.then(() => options.onExit?.());
  try {
    const watching = options.during?.();
    const output = await child.output();
    const seconds = (performance.now() - started) / 1000;
    await watching;
    let peakRssBytes: number | undefined;
    if (rssFile) {
      const kib = Number((await Deno.readTextFile(rssFile)).trim().split("\n").at(-1));
      if (Number.isFinite(kib) && kib > 0) peakRssBytes = kib * 1024;
    }
    const decoder = new TextDecoder();
    return {
      seconds,
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
      peakRssBytes,
    };
  } finally {
    clearTimeout(timer);
    if (rssFile) await Deno.remove(rssFile).catch(() => {});
  }
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Peak (VmHWM) and current (VmRSS) resident memory of a live process, in bytes. */
export function residentMemory(pid: number): { rssBytes: number; peakBytes: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
    return match ? Number(match[1]) * 1024 : 0;
  };
  return { rssBytes: field("VmRSS"), peakBytes: field("VmHWM") };
}

/**
 * Proportional set size: resident memory with pages shared between processes
 * (the Deno binary's code, mapped by every instance) split among them.
 */
export function proportionalMemory(pid: number): number | undefined {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes a process has passed to write-like system calls, sockets included. */
export function bytesWritten(pid: number): number | undefined {
  try {
    const match = /^wchar:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/io`));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Flushes dirty pages so one run's writeback does not land in the next run's time. */
export async function syncDisks(): Promise<void> {
  await new Deno.Command("sync", { stdout: "null", stderr: "null" }).output();
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Kernel ticks per second in /proc/stat (USER_HZ, 100 on Linux). */
const _USER_HZ = 100;

/**
 * CPU seconds the whole machine has spent busy (user, nice, system, irq,
 * softirq) since boot, from /proc/stat; undefined where there is none. The
 * difference over a run is what the run cost every process taking part
 * (client, servers, kernel work for both), on a machine otherwise idle.
 */
export function machineBusySeconds(): number | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
    const [user, nice, system, _idle, _iowait, irq, softirq] = line.trim().split(/\s+/).slice(1)
      .map(Number);
    const busy = user! + nice! + system! + irq! + softirq!;
    return Number.isFinite(busy) ? busy / _USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

/** The load averages (1, 5, 15 min) right now, as /proc/loadavg gives them. */
export async function loadAverage(): Promise<string> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text.split(" ").slice(0, 3).join(" ") || "unknown";
}
