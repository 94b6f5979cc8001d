import assert from "node:assert/strict";
import { join } from "node:path";
import { snapshotEvents, toSnapshot, type WatchSnapshot } from "../lib/ui/cluster_watch.ts";
import { instanceGrid, renderLiveView } from "../lib/ui/live_view.ts";
import { summaryLine } from "../lib/ui/status_watch.ts";
import { displayWidth } from "../lib/base/display_width.ts";
import { type StatusReport } from "../lib/ops/status.ts";
import {
  DENO,
  freePortRange,
  FtsProcess,
  MAIN,
  readManifestJson,
  runFts,
  startCluster,
  tempDir,
  writeRandomFile,
} from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { TmuxTerminal } from "./tmux.ts";

const MiB = 1024 * 1024;

function _report(
  instances: { id: string; up: boolean; counters?: Record<string, number> }[],
  files: { name: string; minLiveReplicas: number; under?: number; lost?: number }[] = [],
): StatusReport {
  return {
    replicas: 3,
    instances: instances.map((i) => ({
      id: i.id,
      address: `127.0.0.1:${i.id}`,
      up: i.up,
      ...(i.counters ? { counters: i.counters } : {}),
    })),
    files: files.map((f) => ({
      name: f.name,
      size: 4 * MiB,
      parts: 4,
      minLiveReplicas: f.minLiveReplicas,
      underReplicatedParts: f.under ?? 0,
      lostParts: f.lost ?? 0,
      underReplicatedPartNumbers: [],
      lostPartNumbers: [],
    })),
    supervisor: false,
    healing: null,
  };
}

const idle = { activeConnections: 1, bytesServed: 0, bytesStored: 0, partsStored: 0 };

Deno.test("toSnapshot() marks instances busy from their counters' growth, not counting the probe", () => {
  const first = toSnapshot(
    _report([
      { id: "9001", up: true, counters: idle },
      { id: "9002", up: true, counters: { ...idle, activeConnections: 3, bytesServed: 100 } },
      { id: "9003", up: false },
    ]),
    1_000,
  );
  assert.deepEqual(first.instances.map((i) => i.state), ["up", "up", "down"]);
  assert.deepEqual(first.instances.map((i) => i.connections), [0, 2, 0]);
  const second = toSnapshot(
    _report([
      { id: "9001", up: true, counters: idle },
      {
        id: "9002",
        up: true,
        counters: { ...idle, activeConnections: 3, bytesServed: 2 * MiB + 100 },
      },
      { id: "9003", up: false },
    ]),
    3_000,
    first,
  );
  assert.deepEqual(second.instances.map((i) => i.state), ["up", "busy", "down"]);
  assert.equal(second.instances[1]!.bytesOutPerSecond, MiB);
  // An instance that restarted begins its counters at zero: no negative rate.
  const restarted = toSnapshot(
    _report([{ id: "9001", up: true, counters: idle }, { id: "9002", up: true, counters: idle }]),
    4_000,
    second,
  );
  assert.equal(restarted.instances[1]!.bytesOutPerSecond, 0);
  // Still busy shortly after its last bytes (rate-limited clients read in bursts).
  assert.equal(restarted.instances[1]!.state, "busy");
  const later = toSnapshot(_report([{ id: "9002", up: true, counters: idle }]), 9_000, restarted);
  assert.equal(later.instances[0]!.state, "up");
  // A supervisor that is still starting an instance says so.
  const starting = toSnapshot(_report([{ id: "9001", up: false }]), 1, undefined, {
    "9001": "starting",
  });
  assert.equal(starting.instances[0]!.state, "starting");
});

Deno.test("snapshotEvents() reports an instance lost mid-transfer, repairs, bad copies and health", () => {
  const before = toSnapshot(
    _report(
      [
        { id: "9001", up: true, counters: { ...idle, activeConnections: 3 } },
        { id: "9002", up: true, counters: idle },
        { id: "9003", up: true, counters: idle },
        { id: "9004", up: false },
      ],
      [{ name: "a.bin", minLiveReplicas: 3 }, { name: "b.bin", minLiveReplicas: 2, under: 1 }],
    ),
    1_000,
  );
  const after = toSnapshot(
    _report(
      [
        { id: "9001", up: false },
        {
          id: "9002",
          up: true,
          counters: { ...idle, partsStored: 2, bytesStored: 2 * MiB, reportsReceived: 1 },
        },
        {
          id: "9003",
          up: true,
          counters: { ...idle, partsStored: 1, bytesStored: MiB, quarantined: 1 },
        },
        { id: "9004", up: true, counters: idle },
      ],
      [{ name: "a.bin", minLiveReplicas: 2, under: 2 }, { name: "b.bin", minLiveReplicas: 3 }],
    ),
    2_000,
    before,
  );
  const texts = snapshotEvents(before, after).map((e) => e.text);
  assert.deepEqual(texts, [
    "9001 went down with 2 client connections open: transfers in flight continue from other replicas",
    "9002 was told of 1 bad copy by clients (digest mismatch); they refetched elsewhere",
    "9003 quarantined 1 corrupt copy",
    "9004 up",
    "3 part copies stored (3.0 MiB) on 9002, 9003: a repair or an upload",
    "a.bin degraded: 2 parts below R=3 (fewest live replicas 2)",
    "b.bin healthy again: every part has 3 live replicas",
  ]);
  // Inside `fts cluster` the supervisor reports ups and downs itself.
  const quiet = snapshotEvents(before, after, { upDown: false }).map((e) => e.text);
  assert.ok(!quiet.includes("9004 up"));
  assert.ok(quiet.some((t) => t.startsWith("9001 went down with 2 client connections")));
  assert.deepEqual(snapshotEvents(undefined, after), []);
});

Deno.test("a cluster that stops is one line, not every file LOST; its files' health is unknown", () => {
  const files = [{ name: "a.bin", minLiveReplicas: 3 }, { name: "b.bin", minLiveReplicas: 3 }];
  const up = toSnapshot(
    _report(
      [{ id: "9001", up: true, counters: idle }, { id: "9002", up: true, counters: idle }],
      files,
    ),
    1_000,
  );
  const lost = files.map((f) => ({ ...f, minLiveReplicas: 0, lost: 4 }));
  const down = toSnapshot(
    _report([{ id: "9001", up: false }, { id: "9002", up: false }], lost),
    2_000,
    up,
  );
  assert.equal(down.running, false);
  assert.deepEqual(down.files.map((f) => f.health), ["unknown", "unknown"]);
  const texts = snapshotEvents(up, down).map((e) => e.text);
  assert.ok(
    texts.includes("no instance answers: the cluster stopped (its files are on disk, not lost)"),
  );
  assert.deepEqual(texts.filter((t) => /LOST/.test(t)), []);
  assert.match(summaryLine(down), /^0\/2 up: no instance answers, the cluster is not running/);
  // One instance up again: health is known again, a new start rather than a change per file
  // (a restart of a cluster of 100,000 files is not 100,000 lines); the summary counts them.
  const back = toSnapshot(
    _report([{ id: "9001", up: true, counters: idle }, { id: "9002", up: false }], lost),
    3_000,
    down,
  );
  assert.equal(back.running, true);
  assert.deepEqual(back.files.map((f) => f.health), ["lost", "lost"]);
  assert.deepEqual(snapshotEvents(down, back).map((e) => e.text), ["9001 up"]);
  assert.match(summaryLine(back), /files: 0 healthy, 0 degraded, 2 lost$/);
  // From there, changes are told as before.
  const whole = toSnapshot(
    _report([{ id: "9001", up: true, counters: idle }, { id: "9002", up: true }], files),
    4_000,
    back,
  );
  assert.ok(snapshotEvents(back, whole).some((e) => /^a\.bin healthy again/.test(e.text)));
});

function _snapshot(): WatchSnapshot {
  const snapshot = toSnapshot(
    _report(
      Array.from({ length: 50 }, (_, i) => ({
        id: String(9001 + i),
        up: i !== 11,
        counters: idle,
      })),
      Array.from({ length: 12 }, (_, i) => ({
        name: `file-${String(i).padStart(2, "0")}.bin`,
        minLiveReplicas: i === 5 ? 2 : 3,
        under: i === 5 ? 1 : 0,
      })),
    ),
    Date.now(),
  );
  return snapshot;
}

Deno.test("renderLiveView() lines file columns up and fits the screen with CJK, emoji and accents", () => {
  const names = [
    "plain.bin",
    "日本語のファイル.bin",
    "😀 party.bin",
    "cafe\u0301\u0301.bin",
    "ｆｕｌｌ.bin",
  ];
  const model = {
    title: "fts cluster 日本語 😀 R=3",
    snapshot: toSnapshot(
      _report(
        [{ id: "9001", up: true, counters: idle }],
        names.map((name) => ({ name, minLiveReplicas: 3 })),
      ),
      Date.now(),
    ),
    events: [{ at: Date.now(), level: "info" as const, text: `日本語 ${"😀".repeat(40)}` }],
    prompt: { input: "", help: "quit" },
    now: Date.now(),
  };
  for (const columns of [30, 60, 100]) {
    const lines = renderLiveView(model, { columns, rows: 30 }, false);
    for (const line of lines) {
      assert.ok(displayWidth(line) <= columns, `${displayWidth(line)} > ${columns}: ${line}`);
    }
  }
  const lines = renderLiveView(model, { columns: 120, rows: 30 }, false);
  const sizeColumns = lines.filter((line) => line.includes("4.0 MiB")).map((line) =>
    displayWidth(line.slice(0, line.indexOf("4.0 MiB")))
  );
  assert.equal(sizeColumns.length, names.length);
  assert.equal(new Set(sizeColumns).size, 1, `sizes start at columns ${sizeColumns}`);
});

Deno.test("renderLiveView() fits any terminal, keeps trouble in view, and paints only with colour", () => {
  const events = Array.from({ length: 40 }, (_, i) => ({
    at: Date.now(),
    level: "info" as const,
    text: `event number ${i}`,
  }));
  const model = {
    title: "fts cluster  127.0.0.1:9001-9050  R=3",
    snapshot: _snapshot(),
    events,
    prompt: { input: "kill 90", help: "kill PORT · start PORT · status · quit" },
    now: Date.now(),
  };
  for (
    const size of [{ columns: 80, rows: 24 }, { columns: 120, rows: 40 }, { columns: 40, rows: 10 }]
  ) {
    const lines = renderLiveView(model, size, false);
    assert.ok(lines.length <= size.rows, `${lines.length} lines for ${size.rows} rows`);
    for (const line of lines) assert.ok(line.length <= size.columns, `too wide: ${line}`);
    assert.ok(lines.every((line) => !line.includes("\x1b")), "no escape codes without colour");
  }
  // However short the terminal, the prompt stays at the bottom, and no old events show.
  for (let rows = 4; rows <= 24; rows++) {
    const lines = renderLiveView(model, { columns: 80, rows }, false);
    assert.ok(lines.length <= rows, `${lines.length} lines for ${rows} rows`);
    assert.equal(lines.at(-2), "> kill 90", `${rows} rows: ${lines.join("|")}`);
    assert.ok(!lines.some((line) => line.endsWith("event number 0")), `${rows} rows`);
  }
  const lines = renderLiveView(model, { columns: 100, rows: 30 }, false);
  const screen = lines.join("\n");
  assert.match(screen, /instances {2}49\/50 up, 1 down, 0 busy/);
  assert.match(screen, /9012 DOWN/);
  assert.match(screen, /9001 up/);
  // The degraded file comes first, however many files there are.
  assert.match(
    screen,
    /files {2}R=3: 12 files, 11 healthy, 1 degraded, 0 lost\n {2}file-05\.bin .*degraded/,
  );
  assert.match(screen, /\.\.\. and \d+ more \(fts status lists them all\)/);
  // The newest events, and the prompt with what was typed at the bottom.
  assert.match(screen, /event number 39\n/);
  assert.ok(!screen.includes("event number 0\n"));
  assert.equal(lines.at(-2), "> kill 90");
  const painted = renderLiveView(model, { columns: 100, rows: 30 }, true).join("\n");
  assert.ok(painted.includes("\x1b[31m"), "red for DOWN with colour on");
});

Deno.test("status --watch on a pipe prints a line per event, and JSON snapshots with --json (R=2, 3 servers)", async () => {
  const cluster = await startCluster({ servers: 3, replicas: 2, files: { "w.bin": 300_000 } });
  try {
    const watch = new FtsProcess([
      "status",
      "--watch",
      "--interval",
      "300ms",
      "--data",
      cluster.dir,
    ]);
    await watch.waitFor(/3\/3 up, 0 busy, 0 client connections, .*files: 1 healthy/);
    // An instance that holds a part of the file, so the file's health changes too.
    const victim = Number(
      (await readManifestJson(cluster.dir)).files["w.bin"]!.parts[0]!.replicas[0],
    );
    await cluster.kill(victim);
    await watch.waitFor(new RegExp(`\\d\\d:\\d\\d:\\d\\d ${victim} down\\n`));
    await watch.waitFor(/w\.bin degraded: \d+ parts? below R=2/);
    await watch.waitFor(/2\/3 up, .*files: 0 healthy, 1 degraded/);
    watch.kill("SIGINT");
    const result = await watch.result();
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes("\x1b"), "no escape codes on a pipe");

    const json = new FtsProcess([
      "status",
      "--watch",
      "--json",
      "--interval",
      "300ms",
      "--data",
      cluster.dir,
    ]);
    await json.waitFor(/\n.*\n/);
    json.kill("SIGTERM");
    const lines = (await json.result()).stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2);
    const states = lines[1].instances.map((i: { id: string; state: string }) =>
      `${i.id} ${i.state}`
    );
    assert.deepEqual(states, cluster.ports.map((p) => `${p} ${p === victim ? "down" : "up"}`));
    assert.equal(lines[1].files[0].health, "degraded");

    // A reader that goes away ends the watch, as it would any Unix tool.
    const piped = new Deno.Command("sh", {
      args: [
        "-c",
        `"$0" run -A --quiet "$1" status --watch --json --interval 300ms --data "$2" | head -n 1`,
        DENO,
        MAIN,
        cluster.dir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => piped.kill("SIGKILL"), 30_000);
    const output = await piped.output();
    clearTimeout(timer);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.equal(JSON.parse(new TextDecoder().decode(output.stdout)).type, "snapshot");
  } finally {
    await cluster.stop();
  }
});

/** A preloaded data directory for a cluster that the terminal test starts itself. */
async function _preloaded(servers: number, files: Record<string, number>) {
  const work = await tempDir();
  const data = join(work, "data");
  const base = freePortRange(servers);
  const paths = [];
  for (const [name, size] of Object.entries(files)) {
    const path = join(work, name);
    await writeRandomFile(path, size);
    paths.push(path);
  }
  const setup = ["--servers", String(servers), "--base-port", String(base), "--replicas", "2"];
  const preload = await runFts([
    "preload",
    ...paths,
    ...setup,
    "--part-size",
    "256KiB",
    "--data",
    data,
  ]);
  if (preload.code !== 0) throw new Error(preload.stderr);
  return { work, data, ports: Array.from({ length: servers }, (_, i) => base + i) };
}

async function _portsClosed(ports: number[]): Promise<boolean> {
  for (const port of ports) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return false;
    } catch { /* closed, as it should be */ }
  }
  return true;
}

Deno.test({
  name:
    "cluster: live view in a real terminal: grid, busy, kill/start/status/quit typed at the prompt (tmux, 4 servers)",
  ignore: missingTool("tmux"),
  fn: async () => {
    const { work, data, ports } = await _preloaded(4, { "m.bin": 3 * MiB });
    const term = new TmuxTerminal();
    try {
      await term.start(["cluster", "--data", data, "--heal-after", "0"], {
        env: { NO_COLOR: "1" },
      });
      const b = Number((await readManifestJson(data)).files["m.bin"]!.parts[0]!.replicas[0]);
      const a = ports.find((p) => p !== b)!;
      let screen = await term.waitFor(/instances {2}4\/4 up/);
      assert.match(screen, /^fts cluster {2}127\.0\.0\.1:\d+-\d+ {2}R=2 /);
      assert.match(screen, new RegExp(`${a} up\\b`));
      assert.match(screen, new RegExp(`${b} up\\b`));
      assert.ok(!screen.includes("healthy again"), "no news at start-up");
      assert.match(screen, /m\.bin +3\.0 MiB +12 parts {2}2\/2 live {2}healthy/);
      assert.match(screen, /fts cluster: ready: 4 instances/);
      assert.match(screen, /^>\s*\n.*kill PORT · start PORT · status · quit/m);
      assert.ok(!(await term.capture(true)).includes("\x1b[3"), "no colour with NO_COLOR");

      // A slow client makes instances busy, as the grid and the transfers line show.
      const dest = join(work, "dest");
      await Deno.mkdir(dest);
      const fetch = new FtsProcess([
        "fetch",
        "m.bin",
        dest,
        "--data",
        data,
        "--limit-rate",
        "512KiB",
      ]);
      screen = await term.waitFor(/\d+ BUSY/);
      assert.match(screen, /transfers {2}[1-9]\d* client connections, .* out; \d+ .*\/s out/);
      await fetch.result();

      await term.type(`kill ${b}`);
      await term.waitFor(new RegExp(`> kill ${b}\\n`));
      await term.sendKeys("Enter");
      screen = await term.waitFor(new RegExp(`${b} DOWN`));
      await term.waitFor(/m\.bin .*degraded: \d+ parts? below R/);
      screen = await term.waitFor(new RegExp(`instance ${b} down \\(killed by SIGKILL\\)`));
      assert.match(screen, new RegExp(`> kill ${b}\\n.*killed instance ${b}`, "s"));
      assert.match(screen, /instances {2}3\/4 up, 1 down/);

      await term.type(`start ${b}`);
      await term.sendKeys("Enter");
      await term.waitFor(new RegExp(`instance ${b} up \\(pid \\d+\\)`));
      screen = await term.waitFor(/instances {2}4\/4 up/);
      await term.waitFor(/m\.bin healthy again/);

      // Several ports at once; and a start typed right after a kill starts it once it is gone.
      await term.type(`kill ${a} ${b}`);
      await term.sendKeys("Enter");
      await term.waitFor(/instances {2}2\/4 up, 2 down/);
      await term.type(`start ${a} ${b}`);
      await term.sendKeys("Enter");
      await term.waitFor(/instances {2}4\/4 up/);
      await term.type(`kill ${a}`);
      await term.sendKeys("Enter");
      await term.type(`start ${a}`);
      await term.sendKeys("Enter");
      screen = await term.waitFor(new RegExp(`> start ${a}\\n[^]*instance ${a} up \\(pid`));
      assert.doesNotMatch(screen, /is already up/);
      await term.waitFor(/instances {2}4\/4 up/);

      await term.type("status");
      await term.sendKeys("Enter");
      await term.waitFor(/instances: 4\/4 up/);

      await term.type("frobnicate");
      await term.sendKeys("Enter");
      await term.waitFor(/unknown command "frobnicate"/);

      await term.type("quit");
      await term.sendKeys("Enter");
      screen = await term.waitFor(/\[exit 0\]/);
      // Back on the normal screen: the record of what happened, and nothing left running.
      assert.match(screen, /fts cluster: ready: 4 instances/);
      assert.match(screen, new RegExp(`killed instance ${b}`));
      assert.match(screen, /fts cluster: all instances stopped\n\[exit 0\]/);
      assert.ok(!screen.includes("kill PORT · start PORT"), "the live view is gone");
      assert.ok(await _portsClosed(ports), "every instance stopped");
    } finally {
      await term.close();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "cluster: live view in colour, and Ctrl-C in it stops every instance (tmux, 3 servers)",
  ignore: missingTool("tmux"),
  fn: async () => {
    const { work, data, ports } = await _preloaded(3, { "c.bin": 100_000 });
    const term = new TmuxTerminal();
    try {
      await term.start(["cluster", "--data", data, "--heal-after", "0"]);
      await term.waitFor(/instances {2}3\/3 up/);
      const painted = await term.capture(true);
      assert.ok(painted.includes("\x1b[32m"), "green for up");
      assert.ok(painted.includes("\x1b[1m"), "bold headings");
      await term.sendKeys("C-c");
      const screen = await term.waitFor(/\[exit 0\]/);
      assert.match(screen, /fts cluster: all instances stopped/);
      assert.ok(await _portsClosed(ports), "every instance stopped");
    } finally {
      await term.close();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "status --watch in a real terminal shows a kill as it happens; q quits (tmux, 3 servers)",
  ignore: missingTool("tmux"),
  fn: async () => {
    const cluster = await startCluster({ servers: 3, replicas: 2, files: { "s.bin": 600_000 } });
    const term = new TmuxTerminal();
    try {
      await term.start(["status", "--watch", "--data", cluster.dir], {
        columns: 90,
        rows: 20,
        env: { NO_COLOR: "1" },
      });
      let screen = await term.waitFor(/instances {2}3\/3 up/);
      assert.match(screen, /^fts status --watch /);
      assert.match(screen, /q or Ctrl-C quits\s*$/);
      const port = Number(
        (await readManifestJson(cluster.dir)).files["s.bin"]!.parts[0]!.replicas[0],
      );
      await cluster.kill(port);
      screen = await term.waitFor(new RegExp(`${port} DOWN`));
      screen = await term.waitFor(new RegExp(`\\d\\d:\\d\\d:\\d\\d {2}${port} down`));
      assert.match(screen, /s\.bin .*degraded/);
      for (const line of screen.split("\n")) assert.ok(line.length <= 90);
      await term.sendKeys("q");
      screen = await term.waitFor(/\[exit 0\]/);
      assert.ok(!screen.includes("q or Ctrl-C quits"), "the view is gone");
    } finally {
      await term.close();
      await cluster.stop();
    }
  },
});

Deno.test({
  name: "fetch: progress bar in a real terminal, redrawn in place and cleared at the end (tmux)",
  ignore: missingTool("tmux"),
  fn: async () => {
    const cluster = await startCluster({
      servers: 3,
      replicas: 2,
      partSize: "256KiB",
      files: { "p.bin": 2 * MiB },
    });
    const term = new TmuxTerminal();
    try {
      const dest = join(cluster.work, "dest");
      await Deno.mkdir(dest);
      // Half of it present already: the bar shows that part apart (=) from this run's (#).
      const source = await Deno.readFile(join(cluster.work, "src", "p.bin"));
      await Deno.writeFile(join(dest, "p.bin"), source.subarray(0, MiB));
      await term.start(
        ["fetch", "p.bin", dest, "--data", cluster.dir, "--limit-rate", "256KiB"],
        { columns: 120, rows: 10, env: { NO_COLOR: "1" } },
      );
      const screen = await term.waitFor(/fetch p\.bin \[=+#+-+\] \d+\.\d% /);
      const bar = screen.split("\n").filter((l) => l.startsWith("fetch p.bin ["));
      assert.equal(bar.length, 1, "one bar, redrawn in place");
      assert.match(bar[0]!, /\+1\.0 MiB present {2}parts \d+\/8 \(4 present\)/);
      const done = await term.waitFor(/\[exit 0\]/);
      assert.match(done, /^fetched p\.bin -> .*: 2\.0 MiB, 8 parts \(4 present, 4 fetched/);
      assert.ok(!done.includes("fetch p.bin ["), "the bar is cleared");
    } finally {
      await term.close();
      await cluster.stop();
    }
  },
});

Deno.test("toSnapshot() and the grid: an instance up but serving no parts is FAIL, said when it starts and stops", () => {
  const report = (problem?: string) => {
    const r = _report([{ id: "9001", up: true, counters: idle }, {
      id: "9002",
      up: true,
      counters: idle,
    }]);
    if (problem) r.instances[1]!.storeError = problem;
    return r;
  };
  const fine = toSnapshot(report(), 1_000);
  const failing = toSnapshot(report("its disk has not answered for 12.0 s (/d)"), 2_000, fine);
  assert.deepEqual(failing.instances.map((i) => i.state), ["up", "fail"]);
  assert.deepEqual(snapshotEvents(fine, failing).map((e) => e.text), [
    "9002 up but serving no parts: its disk has not answered for 12.0 s (/d)",
  ]);
  const grid = instanceGrid(failing.instances, 80, false).join("\n");
  assert.match(grid, /9002 FAIL/);
  const back = toSnapshot(report(), 3_000, failing);
  assert.deepEqual(snapshotEvents(failing, back).map((e) => e.text), [
    "9002 serves its parts again",
  ]);
});
