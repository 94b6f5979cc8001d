/**
 * Unit tests of the benchmark's own pieces (bench/): the order contenders take
 * turns in, the chart, the report's generated block, the run records and
 * their ranges, and the shaped-hosts scenario's link fractions and goals.
 */
import assert from "node:assert/strict";
import { type Figure, shuffledForRound } from "../bench/scenarios.ts";
import { renderChart, tickStep } from "../bench/chart.ts";
import { chartPathFor, GENERATED_BEGIN, spliceGenerated, writeRun } from "../bench/report.ts";
import { goalRanges, medianRanges, renderRanges } from "../bench/ranges.ts";
import { scaleResults, type ScaleRow } from "../bench/etcd_scale.ts";
import {
  loadRecords,
  RUN_RECORD_VERSION,
  type RunRecord,
  saveRecord,
} from "../bench/run_record.ts";
import {
  bridgePortBytes,
  CUT_SLACK_S,
  FETCH_TIMEOUT_S,
  fetchElapsedSeconds,
  linkFraction,
  meanActiveHosts,
  shapedHostsGoals,
} from "../bench/shaped_hosts.ts";

Deno.test("shuffledForRound() gives every contender once, the same order for a round each time, and not always the same order", () => {
  const tools = ["fts", "curl", "rsync"];
  const orders = new Set<string>();
  const firsts = new Set<string>();
  for (let round = 0; round < 12; round++) {
    const order = shuffledForRound(tools, round);
    assert.deepEqual([...order].sort(), [...tools].sort());
    assert.deepEqual(shuffledForRound(tools, round), order);
    orders.add(order.join(","));
    firsts.add(order[0]!);
  }
  // Over 12 rounds each tool goes first at least once.
  assert.equal(firsts.size, tools.length);
  assert.ok(orders.size >= 3, `only ${orders.size} orders in 12 rounds`);
  // The input is left alone.
  assert.deepEqual(tools, ["fts", "curl", "rsync"]);
});

/** Tags balance, attributes are quoted, and no bare `&` or `<` is left in text. */
function _assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const match of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const [, closing, name, , selfClosing] = match;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the wrong tag`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], "every tag is closed");
  const text = svg.replace(/<\/?[a-zA-Z][\w-]*(?:\s+[\w:-]+="[^"<]*")*\s*\/?>/g, "");
  assert.ok(!text.includes("<"), `a stray < outside a tag: ${text.slice(text.indexOf("<"), 60)}`);
  assert.ok(!/&(?!amp;|lt;|gt;|quot;|apos;)/.test(text), "a bare & outside an entity");
}

const _figures: Figure[] = [
  { scenario: "1. cold fetch", tool: "fts fetch", seconds: [1.2, 1.4, 1.1] },
  { scenario: "1. cold fetch", tool: "curl (nginx)", seconds: [1.3, 1.5] },
  { scenario: "1. cold fetch", tool: "rsync <daemon> & co", seconds: [0.9] },
  { scenario: "3. damaged", tool: "fts fetch", seconds: [0.19, 0.2] },
  { scenario: "3. damaged", tool: "rsync --inplace", seconds: [0.7, 0.75] },
];

Deno.test("renderChart() writes well-formed SVG with every tool, names escaped, a group per scenario", () => {
  const svg = renderChart(_figures, "fts <bench> & co");
  assert.ok(svg.startsWith("<svg "));
  _assertWellFormed(svg);
  for (const tool of ["fts fetch", "curl (nginx)", "rsync --inplace"]) {
    assert.ok(svg.includes(tool));
  }
  assert.ok(svg.includes("rsync &lt;daemon&gt; &amp; co"));
  assert.ok(svg.includes("fts &lt;bench&gt; &amp; co"));
  assert.equal(svg.match(/class="scenario"/g)?.length, 2);
  // A bar per figure and a dot per run.
  assert.equal(svg.match(/<rect x=/g)?.length, _figures.length);
  assert.equal(svg.match(/<circle /g)?.length, _figures.flatMap((f) => f.seconds).length);
  // Each scenario has its own axis: the damaged region's ends at 0.75 s or just above, not 1.5.
  assert.ok(svg.includes(">0.8 s<") || svg.includes(">0.75 s<"), "the damaged group's own axis");
  // A group of milliseconds is labelled in ms.
  const fast = renderChart([{ scenario: "get", tool: "file.get", seconds: [0.0012, 0.002] }], "t");
  assert.ok(fast.includes(">2 ms<") && fast.includes(">1.6 ms<"), fast);
});

Deno.test("tickStep() gives 1, 2, 2.5 or 5 times a power of ten, about a quarter of the maximum", () => {
  assert.equal(tickStep(1), 0.25);
  assert.equal(tickStep(6), 2);
  assert.equal(tickStep(0.2), 0.05);
  assert.equal(tickStep(100), 25);
  assert.equal(tickStep(0), 1);
});

Deno.test("spliceGenerated() replaces only the generated block and keeps hand-written sections", () => {
  const first = spliceGenerated(undefined, "# Bench\n\nrun 1");
  assert.ok(first.startsWith(GENERATED_BEGIN));
  const withHand = `${first}\n## HTTP gateway\n\nhand-written\n`;
  const second = spliceGenerated(withHand, "# Bench\n\nrun 2");
  assert.ok(second.includes("run 2"));
  assert.ok(!second.includes("run 1"));
  assert.ok(second.endsWith("## HTTP gateway\n\nhand-written\n"));
  assert.equal(second.split(GENERATED_BEGIN).length, 2);
  // A file without markers keeps all it had, below the new block.
  const old = spliceGenerated("# Old\n\nhand\n", "new");
  assert.ok(old.startsWith(GENERATED_BEGIN) && old.endsWith("# Old\n\nhand\n"));
  assert.equal(chartPathFor("/x/RESULTS.md"), "/x/RESULTS.svg");
  assert.equal(chartPathFor("/x/out"), "/x/out.svg");
});

function _record(date: string, seconds: number[], ratio: number, met: boolean): RunRecord {
  return {
    format: "fts-bench-run",
    version: RUN_RECORD_VERSION,
    kind: "bench",
    date,
    machine: "2 CPUs",
    commit: "abc1234",
    versions: "",
    settings: "",
    loadBefore: "0.50 0.40 0.30",
    loadAfter: "1.00 0.50 0.30",
    figures: [{ scenario: "1. cold fetch", tool: "fts fetch", seconds }],
    goals: [{
      name: "cold fetch: fts / fastest peer of the run",
      measured: `${ratio.toFixed(2)}x`,
      target: "<= 1.0x",
      met,
      value: ratio,
    }],
  };
}

Deno.test("medianRanges() and goalRanges() give the lowest and highest across runs and how often a goal was met", () => {
  const records = [
    _record("2026-12-06T10:00:00.000Z", [1, 2, 3], 0.9, true),
    _record("2026-12-06T11:00:00.000Z", [4, 5, 9], 1.2, false),
    _record("2026-12-06T12:00:00.000Z", [1.5, 1.5], 0.95, true),
  ];
  assert.deepEqual(medianRanges(records), [{
    kind: "bench",
    scenario: "1. cold fetch",
    tool: "fts fetch",
    runs: 3,
    min: 1.5,
    max: 5,
  }]);
  const [goal] = goalRanges(records);
  assert.equal(goal!.runs, 3);
  assert.equal(goal!.met, 2);
  assert.equal(goal!.lowest, "0.90x");
  assert.equal(goal!.highest, "1.20x");
  const markdown = renderRanges(records);
  assert.ok(markdown.includes("| 1. cold fetch | fts fetch | 3 | 1.500-5.000 s |"), markdown);
  assert.ok(markdown.includes("| 0.90x - 1.20x | 2 of 3 |"), markdown);
  // A goal recorded without a value is ranged by the number its measure starts with.
  for (const record of records) delete record.goals[0]!.value;
  const [unvalued] = goalRanges([records[1]!, records[0]!, records[2]!]);
  assert.equal(unvalued!.lowest, "0.90x");
  assert.equal(unvalued!.highest, "1.20x");
});

Deno.test("saveRecord() and loadRecords() keep every run, one file each, oldest first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-bench-runs-" });
  try {
    const later = _record("2026-12-06T12:00:00.123Z", [2], 1, true);
    const earlier = _record("2026-12-06T10:00:00.000Z", [1], 1, true);
    const path = await saveRecord(dir, later);
    assert.ok(path.endsWith("2026-12-06T12-00-00Z-abc1234-bench.json"), path);
    await saveRecord(dir, earlier);
    const loaded = await loadRecords(dir);
    assert.deepEqual(loaded.map((r) => r.date), [earlier.date, later.date]);
    await Deno.writeTextFile(`${dir}/other.json`, "{}");
    await assert.rejects(() => loadRecords(dir), TypeError);
    assert.deepEqual(await loadRecords(`${dir}/missing`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scaleResults() makes a group per store and measure, a bar per size, and a 2x goal for each CLI measure", () => {
  const row = (store: string, files: number, ms: number): ScaleRow => ({
    store,
    files,
    changeMs: [1, 2, 3],
    uploadMs: [ms, ms],
    lsMs: [ms * 3],
    lsFirstMs: [ms / 2],
    lsOneMs: [ms],
    getMs: [1],
    fetchMs: [ms],
  });
  const { figures, goals } = scaleResults([
    row("file", 100_000, 700),
    row("file", 100, 400),
    row("etcd", 100, 400),
    row("etcd", 100_000, 1000),
  ]);
  assert.equal(figures.length, 2 * 7 * 2);
  const upload = figures.filter((f) =>
    f.scenario === "file store: publish one more file: `fts upload` 1 KB"
  );
  assert.deepEqual(upload.map((f) => f.tool), ["100 files", "100,000 files"]);
  assert.deepEqual(upload[1]!.seconds, [0.7, 0.7]);
  const goal = (name: string) => goals.find((g) => g.name.startsWith(name))!;
  const first = (store: string) =>
    goal(`${store} store: \`fts ls\` of every file, to its first line, 100,000 / 100 files`);
  assert.equal(first("file").value, 1.75);
  assert.equal(first("file").met, true);
  assert.equal(first("etcd").value, 2.5);
  assert.equal(first("etcd").met, false);
  assert.equal(goal("etcd store: `fts ls` of every file, to its end").target, "-");
  assert.equal(goal("file store: start of a fetch").met, true);
  assert.equal(goal("etcd store: start of a fetch").met, false);
  assert.equal(goal("etcd store: start of a fetch").target, "<= 2.0x");
  assert.equal(goal("etcd store: locate").target, "-");
  assert.equal(goals.filter((g) => g.target !== "-").length, 6);
});

Deno.test("writeRun() keeps the raw figures in runs/, writes the chart beside the report and keeps its hand-written part", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fts-bench-report-" });
  try {
    const out = `${dir}/RESULTS.md`;
    await Deno.writeTextFile(out, "## Hand-written\n\nkept\n");
    const record = _record("2026-12-06T12:00:00.000Z", [1, 2], 0.9, true);
    const { paths } = await writeRun(out, "bench", record, record);
    assert.deepEqual(paths.slice(0, 2), [out, `${dir}/RESULTS.svg`]);
    const markdown = await Deno.readTextFile(out);
    assert.ok(markdown.startsWith(GENERATED_BEGIN), markdown);
    assert.ok(markdown.includes("![Times per tool and scenario"));
    assert.ok(markdown.includes("](RESULTS.svg)"));
    assert.ok(markdown.endsWith("## Hand-written\n\nkept\n"), markdown);
    _assertWellFormed(await Deno.readTextFile(`${dir}/RESULTS.svg`));
    const [kept] = await loadRecords(`${dir}/runs`);
    assert.deepEqual(kept!.figures, record.figures);
    assert.equal(kept!.kind, "bench");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shaped hosts: link fraction, hosts sending at once, bridge counters from ip -j, fetch's own time", () => {
  // 125 MB in 1 s fills a 1 Gbit/s link.
  assert.equal(linkFraction(125e6, 1, 1000), 1);
  assert.equal(linkFraction(25e6, 2, 200), 0.5);
  // Host 0 sends in both intervals, host 1 in the first only, host 2 never (below 100 bytes).
  const sent = [[0, 0, 0], [500, 300, 50], [1000, 350, 99]];
  assert.equal(meanActiveHosts(sent, 100), 1.5);
  assert.equal(meanActiveHosts([[1, 2]], 100), 0);
  const ports = bridgePortBytes(JSON.stringify([
    { ifname: "br0", stats64: { rx: { bytes: 5 }, tx: { bytes: 6 } } },
    { ifname: "h0", stats64: { rx: { bytes: 1234 }, tx: { bytes: 77 } } },
    { ifname: "h1" },
  ]));
  assert.deepEqual(ports.get("h0"), { rx: 1234, tx: 77 });
  assert.deepEqual(ports.get("h1"), { rx: 0, tx: 0 });
  assert.throws(() => bridgePortBytes("{}"), TypeError);
  assert.equal(fetchElapsedSeconds('{"ok":true,"elapsedMs":12345}\n'), 12.345);
  assert.equal(fetchElapsedSeconds("curl said nothing"), undefined);
  assert.equal(fetchElapsedSeconds(""), undefined);
});

Deno.test("shaped hosts: goals met and missed from the medians", () => {
  const gib = 2 ** 30;
  // 1 GiB in 9.5 s is 0.90 of 1 Gbit/s; curl 5x slower, aria2c 1.2x; cut costs 3.2 s.
  const met = shapedHostsGoals({ fileBytes: gib, fts: 9.5, curl: 47.5, aria2c: 11.4, cut: 12.7 });
  assert.deepEqual(met.map((g) => g.met), [true, true, true, true]);
  assert.equal(met[0]!.measured, "0.90");
  assert.equal(met[1]!.measured, "5.00x");
  assert.equal(met[3]!.measured, "3.200 s");
  assert.equal(met[3]!.target, `<= ${FETCH_TIMEOUT_S + CUT_SLACK_S} s`);
  // Slower than 0.85 of the link, under 4x curl, behind aria2c, a cut costing 4 s.
  const missed = shapedHostsGoals({ fileBytes: gib, fts: 12, curl: 40, aria2c: 11, cut: 16 });
  assert.deepEqual(missed.map((g) => g.met), [false, false, false, false]);
  // Without aria2c and the cut run, two goals.
  assert.equal(shapedHostsGoals({ fileBytes: gib, fts: 9.5, curl: 47.5 }).length, 2);
});
