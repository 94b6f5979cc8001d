/**
 * The live view of a cluster as lines of text for one screen: a grid of the
 * instances (up, busy, failing, down, starting), transfers in flight, each file's
 * replication health, healing, and the latest events. Pure: the same model
 * and size give the same lines, so tests read exactly what a person sees.
 */
import {
  type EventLevel,
  type FileView,
  type InstanceState,
  type InstanceView,
  type WatchEvent,
  type WatchSnapshot,
} from "./cluster_watch.ts";
import { displayWidth, padEndColumns } from "../base/display_width.ts";
import { printable } from "../base/printable.ts";
import { padVisible, paint, type Style, truncateVisible } from "../base/terminal.ts";
import { clock, formatBytes, formatDuration, plural } from "../base/units.ts";

export interface LiveViewModel {
  /** The first line: what is watched ("fts cluster 127.0.0.1:9001-9050, R=5, data ..."). */
  title: string;
  snapshot: WatchSnapshot | undefined;
  /** Oldest first; the view shows the newest that fit. */
  events: WatchEvent[];
  /** The command line at the bottom, when the view takes commands. */
  prompt?: { input: string; help: string };
  /** The last line when there is no prompt: how to leave. */
  footer?: string;
  /** Date.now() for the clock in the title line. */
  now: number;
}

/** The word each state shows as: the view must read right without colour too. */
const STATE_TAGS: Record<InstanceState, { tag: string; style: Style }> = {
  up: { tag: "up", style: "green" },
  busy: { tag: "BUSY", style: "yellow" },
  down: { tag: "DOWN", style: "red" },
  starting: { tag: "....", style: "dim" },
  fail: { tag: "FAIL", style: "red" },
};

const LEVEL_STYLES: Record<EventLevel, Style | undefined> = {
  info: undefined,
  good: "green",
  warn: "yellow",
  bad: "red",
};

const HEALTH_STYLES: Record<FileView["health"], Style> = {
  healthy: "green",
  degraded: "yellow",
  lost: "red",
  unknown: "dim",
};

export { clock };

function _rate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** The instance grid: as many cells per row as the width allows. */
export function instanceGrid(
  instances: readonly InstanceView[],
  columns: number,
  color: boolean,
): string[] {
  if (instances.length === 0) return [];
  const idWidth = Math.max(...instances.map((i) => i.id.length));
  const cellWidth = idWidth + 1 + 4;
  const gap = 2;
  const perRow = Math.max(1, Math.floor((columns - 2 + gap) / (cellWidth + gap)));
  const lines: string[] = [];
  for (let start = 0; start < instances.length; start += perRow) {
    const cells = instances.slice(start, start + perRow).map((i) => {
      const { tag, style } = STATE_TAGS[i.state];
      const bold = i.state === "down" || i.state === "busy" || i.state === "fail";
      const painted = paint(tag.padEnd(4), style, color);
      return `${i.id.padStart(idWidth)} ${bold ? paint(painted, "bold", color) : painted}`;
    });
    lines.push("  " + cells.join(" ".repeat(gap)));
  }
  return lines;
}

function _summary(s: WatchSnapshot, color: boolean): string {
  const count = (state: InstanceState) => s.instances.filter((i) => i.state === state).length;
  const failing = count("fail");
  const up = count("up") + count("busy") + failing;
  const down = count("down");
  const starting = count("starting");
  const parts = [
    paint(`${up}/${s.instances.length} up`, down + failing > 0 ? "yellow" : "green", color),
    ...(down > 0 ? [paint(`${down} down`, "red", color)] : []),
    ...(failing > 0 ? [paint(`${failing} serving no parts`, "red", color)] : []),
    ...(starting > 0 ? [`${starting} starting`] : []),
    `${count("busy")} busy`,
  ];
  return `${paint("instances", "bold", color)}  ${parts.join(", ")}`;
}

/** Transfers in flight: open client connections, and who is sending how fast. */
function _transfers(s: WatchSnapshot, columns: number, color: boolean): string {
  const connections = s.instances.reduce((n, i) => n + i.connections, 0);
  const out = s.instances.reduce((n, i) => n + i.bytesOutPerSecond, 0);
  const inbound = s.instances.reduce((n, i) => n + i.bytesInPerSecond, 0);
  const busiest = s.instances
    .filter((i) => i.bytesOutPerSecond > 0 || i.bytesInPerSecond > 0)
    .sort((a, b) =>
      (b.bytesOutPerSecond + b.bytesInPerSecond) - (a.bytesOutPerSecond + a.bytesInPerSecond)
    )
    .map((i) =>
      `${i.id} ` + (i.bytesOutPerSecond > 0 ? `${_rate(i.bytesOutPerSecond)} out` : "") +
      (i.bytesInPerSecond > 0
        ? `${i.bytesOutPerSecond > 0 ? " " : ""}${_rate(i.bytesInPerSecond)} in`
        : "")
    );
  const head =
    `${paint("transfers", "bold", color)}  ${connections} client connections, ${_rate(out)} out` +
    (inbound > 0 ? `, ${_rate(inbound)} in` : "");
  return truncateVisible(
    busiest.length > 0 ? `${head}; ${busiest.join(", ")}` : head,
    columns,
  );
}

function _fileLine(
  f: FileView,
  replicas: number,
  nameWidth: number,
  color: boolean,
  starting: boolean,
): string {
  // While instances start, missing replicas are expected: no alarm yet.
  const health = starting
    ? "waiting for its instances to start"
    : f.health === "lost"
    ? `LOST: ${plural(f.lostParts, "part")} ${f.lostParts === 1 ? "has" : "have"} no live replica`
    : f.health === "degraded"
    ? `degraded: ${plural(f.underReplicatedParts, "part")} below R`
    : f.health === "unknown"
    ? "on disk; no instance answers"
    : "healthy";
  return `  ${padEndColumns(printable(f.name), nameWidth)}  ${formatBytes(f.size).padStart(10)}  ${
    String(f.parts).padStart(5)
  } ${f.parts === 1 ? "part " : "parts"}  ${f.minLiveReplicas}/${replicas} live  ${
    paint(health, starting ? "dim" : HEALTH_STYLES[f.health], color)
  }`;
}

function _healingLine(s: WatchSnapshot, color: boolean): string | undefined {
  const heal = s.healing;
  if (!heal) return undefined;
  const label = paint("healing", "bold", color);
  if (!heal.enabled) return `${label}  off`;
  if (heal.running) {
    const r = heal.running;
    return `${label}  ${paint("repairing", "cyan", color)} (${r.reason}): ${
      plural(r.copied, "copy", "copies")
    } made (${formatBytes(r.bytesCopied)}), ${r.dropped} surplus dropped`;
  }
  const waiting = heal.down.filter((d) => d.healAt !== null);
  return `${label}  on, after ${formatDuration(heal.healAfterMs)} down` +
    (waiting.length > 0
      ? `; ${waiting.map((d) => `${d.id} at ${clock(Date.parse(d.healAt!))}`).join(", ")}`
      : "");
}

/** Renders the view: at most `rows` lines, each at most `columns` wide. */
export function renderLiveView(
  model: LiveViewModel,
  size: { columns: number; rows: number },
  color: boolean,
): string[] {
  const { columns, rows } = size;
  const fit = (line: string) => truncateVisible(line, columns);
  const top: string[] = [];
  const clockText = clock(model.now);
  const titleRoom = Math.max(0, columns - clockText.length - 1);
  top.push(
    padVisible(truncateVisible(paint(model.title, "bold", color), titleRoom), titleRoom) +
      " " + clockText,
  );
  const s = model.snapshot;
  if (!s) {
    top.push("asking the instances...");
  } else {
    top.push(_summary(s, color));
    top.push(...instanceGrid(s.instances, columns, color));
    top.push(_transfers(s, columns, color));
    const healing = _healingLine(s, color);
    if (healing) top.push(healing);
  }
  const bottom: string[] = model.prompt
    ? [`${paint(">", "bold", color)} ${model.prompt.input}`, paint(model.prompt.help, "dim", color)]
    : model.footer
    ? [paint(model.footer, "dim", color)]
    : [];

  // Files and events share what is left; each gets at least its header and one line.
  let room = Math.max(0, rows - top.length - bottom.length);
  const fileLines: string[] = [];
  if (s && room >= 2) {
    const counts = { healthy: 0, degraded: 0, lost: 0, unknown: 0 };
    for (const f of s.files) counts[f.health]++;
    const starting = s.instances.some((i) => i.state === "starting");
    fileLines.push(
      `${paint("files", "bold", color)}  R=${s.replicas}: ${plural(s.files.length, "file")}, ` +
        (starting
          ? "health once the instances are up"
          : !s.running
          ? "health unknown: no instance answers (the cluster is not running)"
          : `${counts.healthy} healthy, ${counts.degraded} degraded, ${counts.lost} lost`),
    );
    // With events to show, files get about half of the room; else all but two lines.
    const allowed = model.events.length > 0 ? Math.floor(room / 2) - 1 : room - 3;
    const shown = Math.max(0, Math.min(s.files.length, allowed));
    // Trouble first: a lost or degraded file must not be scrolled away.
    const order = { lost: 0, degraded: 1, healthy: 2, unknown: 3 };
    const files = [...s.files].sort((a, b) =>
      order[a.health] - order[b.health] || a.name.localeCompare(b.name)
    );
    const listed = shown < s.files.length ? Math.max(0, shown - 1) : shown;
    const nameWidth = Math.max(
      4,
      ...files.slice(0, listed).map((f) => displayWidth(printable(f.name))),
    );
    for (const f of files.slice(0, listed)) {
      fileLines.push(_fileLine(f, s.replicas, nameWidth, color, starting));
    }
    if (listed < s.files.length && shown > 0) {
      fileLines.push(`  ... and ${s.files.length - listed} more (fts status lists them all)`);
    }
    room -= fileLines.length;
  }
  const eventLines: string[] = [];
  if (room >= 1) {
    eventLines.push(paint("events", "bold", color));
    // (slice(-0) would be every event, not none.)
    const newest = room > 1 ? model.events.slice(-(room - 1)) : [];
    for (const e of newest) {
      const style = LEVEL_STYLES[e.level];
      const text = style ? paint(e.text, style, color) : e.text;
      eventLines.push(`  ${paint(clock(e.at), "dim", color)}  ${text}`);
    }
    while (eventLines.length < room) eventLines.push("");
  }
  // What does not fit goes from above the prompt: typing must never be blind.
  const body = [...top, ...fileLines, ...eventLines].slice(0, Math.max(0, rows - bottom.length));
  const lines = [...body, ...bottom];
  return lines.slice(Math.max(0, lines.length - rows)).map(fit);
}
