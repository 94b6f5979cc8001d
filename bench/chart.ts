/**
 * The benchmark's chart: an SVG, written by hand (no dependency), of each
 * scenario's times per tool. Scenarios differ by orders of magnitude (a
 * damaged region takes 0.2 s, 16 clients 6 s), so every scenario is a group
 * with its own seconds axis: one horizontal bar per tool at its median, a
 * dot per measured run, fts's bars in a colour of their own.
 */
import { median } from "./measure.ts";
import { type Figure } from "./scenarios.ts";

const WIDTH_PX = 820;
const LABEL_WIDTH_PX = 300;
const PLOT_LEFT_PX = LABEL_WIDTH_PX + 10;
/** Room right of the plot for the median's figure. */
const PLOT_RIGHT_MARGIN_PX = 80;
const PLOT_WIDTH_PX = WIDTH_PX - PLOT_LEFT_PX - PLOT_RIGHT_MARGIN_PX;
const TITLE_HEIGHT_PX = 50;
const GROUP_TITLE_HEIGHT_PX = 22;
const BAR_ROW_HEIGHT_PX = 20;
const BAR_HEIGHT_PX = 12;
const AXIS_HEIGHT_PX = 30;
const GROUP_GAP_PX = 12;
/** Tick marks aimed at per axis; the step is rounded to 1, 2, 2.5 or 5 times a power of ten. */
const TICKS_AIMED = 4;
const FTS_COLOUR = "#1f6fb4";
const PEER_COLOUR = "#a8b3bf";
const DOT_COLOUR = "#1b1b1b";
const MAX_LABEL_CHARS = 46;
/** A group whose axis ends under this many seconds is labelled in milliseconds. */
const SECONDS_AS_MS_BELOW = 0.1;

/** Text made safe for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&apos;");
}

/** A tick step near `max / TICKS_AIMED`: 1, 2, 2.5 or 5 times a power of ten. */
export function tickStep(max: number): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const rough = max / TICKS_AIMED;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= rough) ?? 10;
  return step * power;
}

function _number(value: number): string {
  if (value === 0) return "0";
  if (value < 0.1) return value.toFixed(3);
  if (value < 10) return value.toFixed(2).replace(/\.?0+$/, "");
  return value.toFixed(1).replace(/\.0$/, "");
}

/** Seconds with their unit, in ms for a group whose axis ends under SECONDS_AS_MS_BELOW. */
function _formatter(axisMax: number): (seconds: number) => string {
  return axisMax < SECONDS_AS_MS_BELOW
    ? (seconds) => `${_number(seconds * 1000)} ms`
    : (seconds) => `${_number(seconds)} s`;
}

function _isFts(tool: string): boolean {
  return /^fts\b/.test(tool);
}

function _label(tool: string): string {
  return tool.length > MAX_LABEL_CHARS ? `${tool.slice(0, MAX_LABEL_CHARS - 1)}…` : tool;
}

/** The groups of figures by scenario, in the order scenarios first appear. */
function _groups(figures: Figure[]): [string, Figure[]][] {
  const groups = new Map<string, Figure[]>();
  for (const figure of figures) {
    if (figure.seconds.length === 0) continue;
    const group = groups.get(figure.scenario) ?? [];
    group.push(figure);
    groups.set(figure.scenario, group);
  }
  return [...groups];
}

function _group(
  scenario: string,
  figures: Figure[],
  top: number,
): { svg: string[]; height: number } {
  const highest = Math.max(...figures.flatMap((f) => f.seconds));
  const step = tickStep(highest);
  const axisMax = Math.max(step, Math.ceil(highest / step - 1e-9) * step);
  const x = (seconds: number) => PLOT_LEFT_PX + (seconds / axisMax) * PLOT_WIDTH_PX;
  const time = _formatter(axisMax);
  const bars: string[] = [];
  let y = top + GROUP_TITLE_HEIGHT_PX;
  for (const figure of figures) {
    const fts = _isFts(figure.tool);
    const middle = median(figure.seconds);
    const barTop = y + (BAR_ROW_HEIGHT_PX - BAR_HEIGHT_PX) / 2;
    const centre = y + BAR_ROW_HEIGHT_PX / 2;
    bars.push(
      `<text x="${PLOT_LEFT_PX - 8}" y="${centre + 4}" text-anchor="end"${
        fts ? ` font-weight="bold"` : ""
      }>${escapeXml(_label(figure.tool))}</text>`,
      `<rect x="${PLOT_LEFT_PX}" y="${barTop}" width="${
        (x(middle) - PLOT_LEFT_PX).toFixed(1)
      }" height="${BAR_HEIGHT_PX}" fill="${fts ? FTS_COLOUR : PEER_COLOUR}"><title>${
        escapeXml(`${figure.tool}: median ${time(middle)}`)
      }</title></rect>`,
      ...figure.seconds.map((s) =>
        `<circle cx="${x(s).toFixed(1)}" cy="${centre}" r="2.5" fill="${DOT_COLOUR}" ` +
        `fill-opacity="0.7"><title>${time(s)}</title></circle>`
      ),
      `<text x="${(Math.max(x(middle), ...figure.seconds.map(x)) + 6).toFixed(1)}" y="${
        centre + 4
      }" class="value">${time(middle)}</text>`,
    );
    y += BAR_ROW_HEIGHT_PX;
  }
  const axisY = y + 2;
  // The grid first, so that bars and dots lie on top of it.
  const svg = [
    `<g class="scenario">`,
    `<text x="10" y="${top + 15}" class="scenario-title">${escapeXml(scenario)}</text>`,
  ];
  svg.push(
    `<line x1="${PLOT_LEFT_PX}" y1="${axisY}" x2="${
      PLOT_LEFT_PX + PLOT_WIDTH_PX
    }" y2="${axisY}" stroke="#555"/>`,
  );
  for (let tick = 0; tick <= axisMax + step / 1e6; tick += step) {
    const tx = x(tick).toFixed(1);
    svg.push(
      `<line x1="${tx}" y1="${top + GROUP_TITLE_HEIGHT_PX}" x2="${tx}" y2="${
        axisY + 4
      }" stroke="#ddd"/>`,
      `<text x="${tx}" y="${axisY + 16}" text-anchor="middle" class="tick">${time(tick)}</text>`,
    );
  }
  svg.push(...bars, `</g>`);
  return { svg, height: y - top + AXIS_HEIGHT_PX };
}

/** An SVG chart of `figures`: per scenario, a bar per tool at its median and a dot per run. */
export function renderChart(figures: Figure[], title: string): string {
  const body: string[] = [];
  let y = TITLE_HEIGHT_PX;
  for (const [scenario, group] of _groups(figures)) {
    const { svg, height } = _group(scenario, group, y);
    body.push(...svg);
    y += height + GROUP_GAP_PX;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH_PX}" height="${y}" ` +
    `viewBox="0 0 ${WIDTH_PX} ${y}" font-family="sans-serif" font-size="12">`,
    `<style>.scenario-title { font-weight: bold; font-size: 13px; } ` +
    `.tick { fill: #555; font-size: 10px; } .value { fill: #333; font-size: 11px; }</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="10" y="38" class="tick">` +
    `bar: median; dot: one run; fts in blue; each scenario has its own seconds axis</text>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}
