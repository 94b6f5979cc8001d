/** The benchmark's report: the machine, the commit, and Markdown tables of figures and goals. */
import { median } from "./measure.ts";
import { type Figure, type Goal } from "./scenarios.ts";

export interface Meta {
  date: string;
  machine: string;
  commit: string;
  versions: string;
  settings: string;
  loadBefore: string;
  loadAfter: string;
}

async function _output(program: string, args: string[]): Promise<string> {
  try {
    const result = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
      .output();
    const decoder = new TextDecoder();
    return (decoder.decode(result.stdout) + decoder.decode(result.stderr)).trim();
  } catch {
    return "";
  }
}

/** nproc, memory and CPU model. */
export async function machineInfo(): Promise<string> {
  const cpus = navigator.hardwareConcurrency;
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown CPU";
  return `${cpus} CPUs (nproc), ${
    (memKiB / 2 ** 20).toFixed(1)
  } GiB memory, ${model}, Linux ${Deno.osRelease()}`;
}

/** The load averages (1, 5, 15 min) right now. */
export async function loadAverage(): Promise<string> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text.split(" ").slice(0, 3).join(" ") || "unknown";
}

/** The commit the benchmark ran on, marked when the tree had uncommitted changes. */
export async function gitCommit(): Promise<string> {
  const head = await _output("git", ["rev-parse", "--short", "HEAD"]);
  if (!/^[0-9a-f]+$/.test(head)) return "unknown (not a git checkout)";
  const dirty = await _output("git", ["status", "--porcelain", "--untracked-files=no"]);
  return dirty ? `${head} + uncommitted changes` : head;
}

/** The versions of what was compared. */
export async function toolVersions(programs: Record<string, string>): Promise<string> {
  const first = (text: string) => text.split("\n")[0] ?? "";
  const nginx = first(await _output(programs.nginx!, ["-v"])).replace(/^nginx version: /, "");
  const rsync = /version\s+(\S+)/.exec(await _output(programs.rsync!, ["--version"]))?.[1];
  const curl = first(await _output(programs.curl!, ["--version"])).split(" ").slice(0, 2).join(
    " ",
  );
  return `Deno ${Deno.version.deno}, ${nginx}, rsync ${rsync ?? "?"}, ${curl}`;
}

function _busy(meta: Meta): boolean {
  // The 1-minute averages when the run began and ended.
  const loads = [meta.loadBefore, meta.loadAfter].map((text) => Number(text.split(" ")[0]));
  return loads.some((load) => load > navigator.hardwareConcurrency / 2);
}

function _seconds(value: number): string {
  return `${value.toFixed(3)} s`;
}

function _bytes(value: number | undefined): string {
  if (value === undefined) return "-";
  if (value >= 2 ** 30) return `${(value / 2 ** 30).toFixed(3)} GiB`;
  if (value >= 2 ** 20) return `${(value / 2 ** 20).toFixed(2)} MiB`;
  return `${(value / 1024).toFixed(1)} KiB`;
}

function _row(cells: string[]): string {
  return `| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
}

export function renderMarkdown(meta: Meta, figures: Figure[], goals: Goal[]): string {
  const lines = [
    "# fts benchmark",
    "",
    `- Date: ${meta.date}`,
    `- Machine: ${meta.machine}`,
    `- Commit: ${meta.commit}`,
    `- Versions: ${meta.versions}`,
    `- Settings: ${meta.settings}`,
    `- Load average (1/5/15 min) before: ${meta.loadBefore}; after: ${meta.loadAfter}`,
    ...(_busy(meta)
      ? [
        "- **The machine was busy** (a load average above half the CPUs): other processes",
        "  competed for the cores, so the figures are noisy; fts, which uses both cores,",
        "  suffers more from that than a single-threaded peer.",
      ]
      : []),
    "",
    "All on loopback in one run. Times are wall-clock from process start to exit;",
    "medians over the measured runs, after warm-ups; the contenders of a scenario take",
    "turns, in a new (seeded) order each round. Bytes sent are counted by the",
    "servers: fts instances' `bytesServed` counters, nginx's `$bytes_sent`, rsync's",
    "`--stats`. Peak RSS is the client's (ru_maxrss via /usr/bin/time).",
    "",
    "## Goals",
    "",
    _row(["Goal", "Measured", "Target", "Met"]),
    _row(["---", "---", "---", "---"]),
    ...goals.map((g) => _row([g.name, g.measured, g.target, g.met ? "yes" : "**no**"])),
    "",
    "## Figures",
    "",
    _row([
      "Scenario",
      "Tool",
      "Median",
      "Best",
      "Runs",
      "Bytes sent (servers)",
      "Client peak RSS",
      "Notes",
    ]),
    _row(["---", "---", "---:", "---:", "---", "---:", "---:", "---"]),
    ...figures.map((f) =>
      _row([
        f.scenario,
        f.tool,
        _seconds(median(f.seconds)),
        _seconds(Math.min(...f.seconds)),
        f.seconds.map((s) => s.toFixed(3)).join(", "),
        _bytes(f.bytesSent),
        f.peakRssBytes === undefined ? "-" : `${(f.peakRssBytes / 1e6).toFixed(1)} MB`,
        f.note ?? "",
      ])
    ),
    "",
  ];
  return lines.join("\n");
}
