/**
 * `deno task bench:ranges [DIR]`: the spread of the benchmark across runs.
 * Reads every run record in DIR (default bench/runs/, one JSON file per full
 * run that bench.ts and etcd_scale.ts write) and prints, as Markdown that
 * README's Speed section can quote:
 *
 * 1. per scenario and tool, the range (min-max) of the run's medians;
 * 2. per goal, the range of what was measured and in how many runs it was met.
 */
import { fileURLToPath } from "node:url";
import { median } from "./measure.ts";
import { loadRecords, type RunRecord } from "./run_record.ts";

const DEFAULT_DIR = fileURLToPath(new URL("./runs/", import.meta.url));
/** Ranges whose top is under this many seconds are shown in milliseconds. */
const SECONDS_AS_MS_BELOW = 0.1;

export interface MedianRange {
  kind: string;
  scenario: string;
  tool: string;
  /** Runs that measured this tool. */
  runs: number;
  min: number;
  max: number;
}

export interface GoalRange {
  kind: string;
  name: string;
  target: string;
  runs: number;
  met: number;
  /** What the run with the lowest and the highest value measured, as it said it. */
  lowest: string;
  highest: string;
}

/** Per scenario and tool, the lowest and highest median over `records`, in first-seen order. */
export function medianRanges(records: RunRecord[]): MedianRange[] {
  const ranges = new Map<string, MedianRange>();
  for (const record of records) {
    for (const figure of record.figures) {
      if (figure.seconds.length === 0) continue;
      const value = median(figure.seconds);
      const key = JSON.stringify([record.kind, figure.scenario, figure.tool]);
      const range = ranges.get(key);
      if (!range) {
        ranges.set(key, {
          kind: record.kind,
          scenario: figure.scenario,
          tool: figure.tool,
          runs: 1,
          min: value,
          max: value,
        });
        continue;
      }
      range.runs++;
      range.min = Math.min(range.min, value);
      range.max = Math.max(range.max, value);
    }
  }
  return [...ranges.values()];
}

/** Per goal, the spread of its measured value and how often it was met. */
export function goalRanges(records: RunRecord[]): GoalRange[] {
  const ranges = new Map<string, GoalRange & { low: number; high: number }>();
  for (const record of records) {
    for (const goal of record.goals) {
      const key = JSON.stringify([record.kind, goal.name]);
      const value = goal.value ?? _leadingNumber(goal.measured);
      const range = ranges.get(key);
      if (!range) {
        ranges.set(key, {
          kind: record.kind,
          name: goal.name,
          target: goal.target,
          runs: 1,
          met: goal.met ? 1 : 0,
          lowest: goal.measured,
          highest: goal.measured,
          low: value,
          high: value,
        });
        continue;
      }
      range.runs++;
      if (goal.met) range.met++;
      range.target = goal.target;
      if (value < range.low || Number.isNaN(range.low)) {
        range.low = value;
        range.lowest = goal.measured;
      }
      if (value > range.high || Number.isNaN(range.high)) {
        range.high = value;
        range.highest = goal.measured;
      }
    }
  }
  return [...ranges.values()].map(({ low: _low, high: _high, ...range }) => range);
}

/**
 * The first number in a goal's measure ("0.87", "4.53x", "1.856 s"), for
 * records whose goal has no value of its own; NaN when there is none.
 */
function _leadingNumber(measured: string): number {
  const match = /-?\d+(?:\.\d+)?/.exec(measured);
  return match ? Number(match[0]) : NaN;
}

/** A range of seconds, in ms when its top is under SECONDS_AS_MS_BELOW. */
function _span(min: number, max: number): string {
  const [scale, unit] = max < SECONDS_AS_MS_BELOW ? [1000, "ms"] : [1, "s"];
  const text = (value: number) => (value * scale).toFixed(value * scale < 10 ? 3 : 1);
  return min === max ? `${text(min)} ${unit}` : `${text(min)}-${text(max)} ${unit}`;
}

function _row(cells: string[]): string {
  return `| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
}

/** The two ranges as Markdown tables, with the runs they come from. */
export function renderRanges(records: RunRecord[]): string {
  if (records.length === 0) return "No run records yet: a full `deno task bench` writes one.\n";
  const dates = records.map((r) => r.date.slice(0, 10)).sort();
  const commits = [...new Set(records.map((r) => r.commit))];
  const loads = records.map((r) => `${r.loadBefore.split(" ")[0]}/${r.loadAfter.split(" ")[0]}`);
  const lines = [
    `Ranges over ${records.length} run${records.length === 1 ? "" : "s"}, ${dates[0]} to ${
      dates.at(-1)
    }, commits ${commits.join(", ")}; load average (1 min) before/after each: ${loads.join(", ")}.`,
    "",
    _row(["Scenario", "Tool", "Runs", "Median, lowest-highest"]),
    _row(["---", "---", "---:", "---:"]),
    ...medianRanges(records).map((r) =>
      _row([
        r.scenario,
        r.tool,
        String(r.runs),
        _span(r.min, r.max),
      ])
    ),
    "",
    _row(["Goal", "Target", "Measured, lowest-highest", "Met"]),
    _row(["---", "---", "---", "---"]),
    ...goalRanges(records).map((g) =>
      _row([
        g.name,
        g.target,
        g.lowest === g.highest ? g.lowest : `${g.lowest} - ${g.highest}`,
        g.target === "-" ? "-" : `${g.met} of ${g.runs}`,
      ])
    ),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? DEFAULT_DIR;
  console.log(renderRanges(await loadRecords(dir)));
}
