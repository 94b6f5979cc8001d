import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Progress,
  type ProgressState,
  renderProgressBar,
  type ReportMode,
  reportMode,
} from "../lib/ui/progress.ts";
import { stripAnsi } from "../lib/base/terminal.ts";
import { freePortRange, runFts, startCluster, tempDir, writeRandomFile } from "./harness.ts";

const MiB = 1024 * 1024;

/** A reporter on a fake clock that records what it writes. */
function _recorder(mode: ReportMode) {
  const out: string[] = [];
  let now = 0;
  const progress = new Progress(mode, {
    write: (text) => out.push(text),
    now: () => now,
    columns: () => 120,
    color: false,
  });
  return { out, progress, advance: (ms: number) => (now += ms) };
}

const resumed: ProgressState = {
  label: "fetch a.bin",
  bytesTotal: 100 * MiB,
  bytesPresent: 70 * MiB,
  bytesDone: 0,
  partsTotal: 100,
  partsPresent: 70,
  partsDone: 0,
};

Deno.test("reportMode() picks quiet, then json, then a bar only on a terminal", () => {
  const tty = { isTerminal: () => true };
  const pipe = { isTerminal: () => false };
  assert.equal(reportMode({ quiet: true, json: true }, tty), "quiet");
  assert.equal(reportMode({ json: true }, tty), "json");
  assert.equal(reportMode({}, tty), "bar");
  assert.equal(reportMode({}, pipe), "plain");
});

Deno.test("renderProgressBar() counts bytes already present apart from this run's work", () => {
  const line = renderProgressBar(resumed, { bytesPerSecond: 0, etaMs: undefined }, 120);
  // The percentage is of the 30 MiB still to fetch, so a resume starts at 0 %, not 70 %.
  assert.match(line, /\b0\.0% 0 B\/30\.0 MiB .* \+70\.0 MiB present/);
  assert.match(line, /parts 70\/100 \(70 present\)/);
  const bar = /\[([^\]]+)\]/.exec(line)![1]!;
  assert.equal(bar.length, [...bar].filter((c) => "=#-".includes(c)).length);
  const presentShare = bar.split("=").length - 1;
  assert.ok(
    Math.abs(presentShare / bar.length - 0.7) < 0.05,
    `present cells ${presentShare}/${bar.length}`,
  );
  assert.ok(!bar.includes("#"), "nothing fetched yet");
  const half = renderProgressBar(
    { ...resumed, bytesDone: 15 * MiB, partsDone: 15, failovers: 2 },
    { bytesPerSecond: 5 * MiB, etaMs: 3_000 },
    120,
  );
  assert.match(half, /50\.0% 15\.0 MiB\/30\.0 MiB/);
  assert.match(half, /5\.0 MiB\/s {2}ETA 3\.0 s/);
  assert.match(half, /2 failed over/);
});

Deno.test("renderProgressBar() follows bytes received before their part is verified, within bounds", () => {
  const rate = { bytesPerSecond: MiB, etaMs: 1_000 };
  const inFlight = { ...resumed, bytesDone: 0, bytesMoved: 15 * MiB };
  assert.match(renderProgressBar(inFlight, rate, 120), /50\.0% 15\.0 MiB\/30\.0 MiB/);
  assert.match(
    renderProgressBar(inFlight, rate, 120),
    /parts 70\/100/,
    "parts count verified ones",
  );
  // A refetched bad part can make received exceed the work: never over 100 %.
  const over = { ...resumed, bytesDone: 30 * MiB, bytesMoved: 31 * MiB };
  assert.match(renderProgressBar(over, rate, 120), /100\.0% 30\.0 MiB\/30\.0 MiB/);
});

Deno.test("renderProgressBar() fits the terminal width and paints only with colour on", () => {
  const state = { ...resumed, bytesDone: 10 * MiB, partsDone: 10 };
  const rate = { bytesPerSecond: MiB, etaMs: 20_000 };
  for (const columns of [40, 80, 200]) {
    const line = renderProgressBar(state, rate, columns);
    assert.ok(line.length <= columns - 1, `${line.length} > ${columns - 1}: ${line}`);
  }
  assert.ok(!renderProgressBar(state, rate, 100, false).includes("\x1b"));
  const painted = renderProgressBar(state, rate, 100, true);
  assert.ok(painted.includes("\x1b["));
  assert.equal(stripAnsi(painted), renderProgressBar(state, rate, 100, false));
});

Deno.test("Progress.rate() measures only bytes moved in this run, not bytes present", () => {
  const { progress, advance } = _recorder("quiet");
  progress.update({ ...resumed, bytesMoved: 0 });
  advance(1_000);
  progress.update({ ...resumed, bytesDone: 2 * MiB, bytesMoved: 2 * MiB });
  advance(1_000);
  const state = { ...resumed, bytesDone: 4 * MiB, bytesMoved: 4 * MiB };
  progress.update(state);
  const rate = progress.rate(state);
  assert.equal(rate.bytesPerSecond, 2 * MiB);
  assert.equal(rate.etaMs, 13_000); // 26 MiB left at 2 MiB/s
});

Deno.test("Progress in plain mode prints a line per interval; quiet prints nothing", () => {
  const plain = _recorder("plain");
  for (let i = 0; i < 50; i++) {
    plain.advance(200);
    plain.progress.update({ ...resumed, bytesDone: i * MiB / 2, partsDone: i });
  }
  // 10 s at one line per 2 s.
  assert.equal(plain.out.length, 5);
  for (const line of plain.out) {
    assert.match(line, /^fetch a\.bin: .* \+ 70\.0 MiB already present, .*\/s, ETA .*\n$/);
  }
  plain.progress.event("failover: part 3");
  assert.equal(plain.out.at(-1), "failover: part 3\n");
  const quiet = _recorder("quiet");
  quiet.progress.update(resumed);
  quiet.progress.event("failover: part 3");
  quiet.progress.finish();
  assert.deepEqual(quiet.out, []);
});

Deno.test("Progress in json mode prints JSON progress objects and events", () => {
  const json = _recorder("json");
  json.advance(2_500);
  json.progress.update({ ...resumed, bytesDone: MiB, partsDone: 1 });
  json.progress.event("failover: part 3", { type: "failover", part: 3 });
  const [progress, event] = json.out.map((line) => JSON.parse(line));
  assert.equal(progress.type, "progress");
  assert.equal(progress.bytesPresent, 70 * MiB);
  assert.equal(progress.bytesDone, MiB);
  assert.deepEqual(event, { type: "failover", part: 3 });
});

Deno.test("Progress in bar mode redraws in place, and an event goes above the bar", () => {
  const bar = _recorder("bar");
  bar.progress.update(resumed);
  assert.match(bar.out[0]!, /^\r.*\[=+-+\]/);
  assert.ok(bar.out[0]!.endsWith("\x1b[K"), "clears what an older, longer bar left");
  bar.advance(500);
  bar.progress.event("failover: part 3");
  // Clear the bar's line, print the event, draw the bar again below it.
  assert.equal(bar.out[1], "\r\x1b[K");
  assert.equal(bar.out[2], "failover: part 3\n");
  assert.match(bar.out[3]!, /^\rfetch a\.bin \[/);
  bar.progress.finish();
  assert.equal(bar.out.at(-1), "\r\x1b[K");
});

Deno.test("fetch: plain progress on a pipe counts the present bytes apart on resume (R=2, 4 servers)", async () => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "256KiB",
    files: { "r.bin": 4 * MiB },
  });
  try {
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    // Three quarters of the file already at the destination, as after an interrupted fetch.
    const source = await Deno.readFile(join(cluster.work, "src", "r.bin"));
    await Deno.writeFile(join(dest, "r.bin"), source.subarray(0, 3 * MiB));
    // 1 MiB missing at 256 KiB/s: several seconds, so plain lines (every 2 s) appear.
    const result = await cluster.fts(["fetch", "r.bin", dest, "--limit-rate", "256KiB"]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.split("\n").filter((l) => l.startsWith("fetch r.bin:"));
    assert.ok(lines.length >= 1, `no progress lines: ${result.stderr}`);
    for (const line of lines) {
      assert.match(line, /\/1\.0 MiB \(\d+\.\d%\) \+ 3\.0 MiB already present/);
      assert.match(line, /parts 12 present \+ \d+ done of 16/);
      assert.ok(!line.includes("\x1b"), "no escape codes on a pipe");
    }
    assert.match(result.stdout, /12 present, 4 fetched/);
    const quiet = await cluster.fts(["fetch", "r.bin", join(cluster.work), "--quiet"]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stdout + quiet.stderr, "");
  } finally {
    await cluster.stop();
  }
});

Deno.test("preload, kill and start answer --json with one JSON object", async () => {
  const work = await tempDir();
  const data = join(work, "data");
  const file = join(work, "j.bin");
  await writeRandomFile(file, 300_000);
  const base = freePortRange(3);
  const setup = ["--servers", "3", "--base-port", String(base), "--replicas", "2", "--data", data];
  try {
    const preload = await runFts(["preload", file, ...setup, "--part-size", "64KiB", "--json"]);
    assert.equal(preload.code, 0, preload.stderr);
    const entry = JSON.parse(preload.stdout);
    assert.deepEqual(
      [entry.ok, entry.name, entry.size, entry.parts, entry.replicas],
      [true, "j.bin", 300_000, 5, 2],
    );
    assert.equal(preload.stderr, "", "no progress lines with --json on a small file");
    const start = await runFts(["start", String(base), "--data", data, "--json"]);
    assert.equal(start.code, 0, start.stderr);
    const started = JSON.parse(start.stdout);
    assert.equal(started.id, String(base));
    assert.equal(started.supervised, false);
    const kill = await runFts(["kill", String(base), "--data", data, "--json"]);
    assert.equal(kill.code, 0, kill.stderr);
    assert.deepEqual(JSON.parse(kill.stdout), { ok: true, id: String(base), pid: started.pid });
    const again = await runFts(["kill", String(base), "--data", data, "--json"]);
    assert.equal(again.code, 1);
    const error = JSON.parse(again.stdout);
    assert.equal(error.ok, false);
    assert.match(error.error, /already down/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
