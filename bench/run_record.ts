/**
 * The raw figures of one benchmark run, kept as one JSON file under
 * bench/runs/ so that no run's figures are lost when the next report is
 * written: the machine, the commit, the load before and after, every run's
 * seconds and the goals. bench/ranges.ts reads them back.
 */
import { join } from "node:path";
import { type Figure, type Goal } from "./scenarios.ts";

/** Bumped when a field changes meaning; readers skip what they do not know. */
export const RUN_RECORD_VERSION = 1;

export interface Meta {
  date: string;
  machine: string;
  commit: string;
  versions: string;
  settings: string;
  loadBefore: string;
  loadAfter: string;
}

export interface RunRecord extends Meta {
  format: "fts-bench-run";
  version: number;
  /** Which benchmark: the transfer scenarios (`deno task bench`) or the manifest scale. */
  kind: "bench" | "scale";
  figures: Figure[];
  goals: Goal[];
}

/** A file name that sorts by date: `2026-12-06T12-00-00Z-abc1234-bench.json`. */
export function recordFileName(record: RunRecord): string {
  const stamp = record.date.replace(/\.\d+Z$/, "Z").replaceAll(":", "-");
  const commit = /^[0-9a-f]+/.exec(record.commit)?.[0] ?? "unknown";
  const dirty = record.commit.includes("uncommitted") ? "-dirty" : "";
  return `${stamp}-${commit}${dirty}-${record.kind}.json`;
}

/** Writes `record` into `dir` (made if missing); returns the file's path. */
export async function saveRecord(dir: string, record: RunRecord): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, recordFileName(record));
  await Deno.writeTextFile(path, JSON.stringify(record, null, 1) + "\n");
  return path;
}

function _isRecord(value: unknown): value is RunRecord {
  const record = value as Partial<RunRecord> | null;
  return typeof record === "object" && record !== null &&
    record.format === "fts-bench-run" && record.version === RUN_RECORD_VERSION &&
    Array.isArray(record.figures) && Array.isArray(record.goals);
}

/** Every run record in `dir`, oldest first; a file that is not one is an error naming it. */
export async function loadRecords(dir: string): Promise<RunRecord[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".json")) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const records: RunRecord[] = [];
  for (const name of names.sort()) {
    const path = join(dir, name);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await Deno.readTextFile(path));
    } catch (error) {
      throw new SyntaxError(`Cannot read the run record ${path}`, { cause: error });
    }
    if (!_isRecord(parsed)) {
      throw new TypeError(
        `${path} is not a run record of version ${RUN_RECORD_VERSION} (format "fts-bench-run")`,
      );
    }
    records.push(parsed);
  }
  return records;
}
