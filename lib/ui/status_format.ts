/**
 * What `fts status` prints for people: which instances are up (with a grid of
 * them), each file's replica health, and the healing lines (on or off, who is
 * down until when, the running and last runs). The cluster's `status`
 * command prints the same.
 */
import { type HealStatus } from "../ops/heal.ts";
import { type StatusReport } from "../ops/status.ts";
import { clock, formatBytes, formatDuration, plural } from "../base/units.ts";
import { displayWidth, padEndColumns } from "../base/display_width.ts";
import { printable } from "../base/printable.ts";
import { formatUnusedSpace } from "./repair_format.ts";

/** A status report as lines for people. */
export function formatStatus(report: StatusReport): string {
  const up = report.instances.filter((i) => i.up);
  const down = report.instances.filter((i) => !i.up);
  const busy = report.instances.filter((i) => i.busy);
  const failing = report.instances.filter((i) => i.storeError !== undefined);
  const lines = [
    `instances: ${up.length}/${report.instances.length} up` +
    (down.length > 0 ? `; down: ${down.map((i) => i.id).join(", ")}` : "") +
    (busy.length > 0
      ? `; busy (every connection taken): ${busy.map((i) => i.id).join(", ")}`
      : "") +
    (failing.length > 0
      ? `; up but serving no parts: ${
        failing.map((i) => `${i.id} (${printable(i.storeError!)})`).join(", ")
      }`
      : ""),
  ];
  const grid = report.instances.map((i) =>
    i.busy ? "B" : i.storeError !== undefined ? "!" : i.up ? "#" : "."
  ).join("");
  for (let i = 0; i < grid.length; i += 50) lines.push(`  ${grid.slice(i, i + 50)}`);
  if (report.files.length === 0) {
    lines.push("files: none");
  } else {
    lines.push(`files (R=${report.replicas}):`);
    const width = Math.max(...report.files.map((f) => displayWidth(printable(f.name))), 4);
    for (const f of report.files) {
      const health = f.lostParts > 0
        ? `LOST: ${plural(f.lostParts, "part")} ${f.lostParts === 1 ? "has" : "have"} no live ` +
          `replica (${_partList(f.lostPartNumbers)})`
        : f.minLiveReplicas < report.replicas
        ? `degraded: ${plural(f.underReplicatedParts, "part")} under-replicated (${
          _partList(f.underReplicatedPartNumbers)
        })`
        : "healthy";
      lines.push(
        `  ${padEndColumns(printable(f.name), width)}  ${formatBytes(f.size).padStart(10)}  ${
          String(f.parts).padStart(6)
        } ${
          f.parts === 1 ? "part " : "parts"
        }  min live replicas ${f.minLiveReplicas}/${report.replicas}  ${health}`,
      );
    }
  }
  if (report.unused && report.unused.parts > 0) lines.push(formatUnusedSpace(report.unused));
  lines.push(...formatHealing(report));
  return lines.join("\n");
}

/** Part numbers for people: "parts 0, 3, 7 and 12 more". */
function _partList(numbers: number[]): string {
  const shown = numbers.slice(0, LISTED_PARTS_MAX).join(", ");
  const more = numbers.length - LISTED_PARTS_MAX;
  return `${numbers.length === 1 ? "part" : "parts"} ${shown}${
    more > 0 ? ` and ${more} more` : ""
  }`;
}

/** Part numbers listed per file before the rest are only counted. */
const LISTED_PARTS_MAX = 10;

/** An ISO time as the local time of day (as the live view's clock and events show it). */
function _clock(iso: string): string {
  return clock(Date.parse(iso));
}

/** What healing did for a down instance whose time is up. */
const _HEALED: Record<HealStatus["down"][number]["copies"], string> = {
  waiting: "its parts get copied elsewhere",
  copying: "its parts are being copied elsewhere",
  copied: "its parts were copied elsewhere",
  incomplete: "healing could not copy all its parts (see the last run)",
  leader: "its parts are for the host that heals to copy (its status says how far)",
};

/** The healing lines of `fts status`: on or off, who is down until when, and the runs. */
export function formatHealing(report: StatusReport): string[] {
  const heal = report.healing;
  if (report.supervisor === null) {
    return [
      report.healer
        ? `healing: ${printable(report.healer)}, elected, heals for the cluster; ` +
          "fts status --data DIR on a host shows its healing"
        : "healing: no host heals for the cluster now (none runs fts cluster --etcd with " +
          "healing on, or one is being elected)",
    ];
  }
  if (!report.supervisor) {
    return [
      "healing: no cluster supervisor runs for this data directory; fts repair heals by hand",
    ];
  }
  if (report.supervisorSilent) {
    return [
      "healing: unknown: the cluster supervisor runs but did not answer (stopped? hung?); " +
      "fts repair heals by hand",
    ];
  }
  if (!heal || !heal.enabled) {
    return ["healing: off (fts cluster --heal-after 0); fts repair heals by hand"];
  }
  const rate = heal.rateBytesPerSecond > 0
    ? `at most ${formatBytes(heal.rateBytesPerSecond)}/s`
    : "unthrottled";
  const lead = heal.leading === undefined
    ? ""
    : heal.leading
    ? "; this host heals for the cluster"
    : heal.leader !== undefined
    ? `; another host heals for the cluster (${
      printable(heal.leader)
    }); this one takes over if it stops`
    : "; no host heals for the cluster now (being elected, or etcd does not answer)";
  const lines = [`healing: on, after ${formatDuration(heal.healAfterMs)} down, ${rate}${lead}`];
  for (const d of heal.down) {
    lines.push(
      `  ${d.id} down since ${_clock(d.since)}: ` +
        (d.healAt ? `its parts get copied elsewhere at ${_clock(d.healAt)}` : _HEALED[d.copies]),
    );
  }
  if (heal.running) {
    const r = heal.running;
    lines.push(
      `  running since ${_clock(r.startedAt)} (${r.reason}): ${
        plural(r.copied, "copy", "copies")
      } made (${formatBytes(r.bytesCopied)}), ${r.dropped} surplus dropped` +
        (r.corrupt > 0 ? `, ${r.corrupt} corrupt quarantined` : ""),
    );
  }
  if (heal.last) {
    const l = heal.last;
    lines.push(
      `  last run ${_clock(l.finishedAt)} (${l.reason}): ` +
        (l.error
          ? `failed: ${l.error}`
          : `${plural(l.copied, "copy", "copies")} made (${
            formatBytes(l.bytesCopied)
          }), ${l.dropped} surplus dropped` +
            (l.short > 0 ? `, ${plural(l.short, "part")} short of R` : "") +
            (l.lost > 0 ? `, ${plural(l.lost, "part")} lost` : "")),
    );
  }
  if (heal.nextRetryAt) lines.push(`  next try at ${_clock(heal.nextRetryAt)}`);
  return lines;
}
