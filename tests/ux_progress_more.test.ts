/**
 * Progress of upload, repair and scrub, shown through lib/ui/progress.ts
 * as fetch and preload show theirs: plain lines on a pipe, JSON lines with
 * --json, a bar in a real terminal.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { repairProgressState } from "../lib/ui/repair_progress.ts";
import { uploadProgressState } from "../commands/upload.ts";
import { type RepairProgress } from "../lib/ops/repair.ts";
import { formatBytes } from "../lib/base/units.ts";
import { type UploadProgress } from "../lib/client/upload_progress.ts";
import {
  damageFile,
  readManifestJson,
  startCluster,
  storedPartPath,
  writeRandomFile,
} from "./harness.ts";
import { missingTool } from "./missing_tool.ts";
import { TmuxTerminal } from "./tmux.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const PART = 256 * KiB;

/** The JSON objects of a --json run's stderr; fails on any line that is not one. */
function _jsonLines(stderr: string): Record<string, unknown>[] {
  return stderr.split("\n").filter((l) => l !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`Not a JSON line on stderr: ${line}`);
    }
  });
}

Deno.test("uploadProgressState() counts parts the instances already held apart, and replaced instances as failovers", () => {
  const p: UploadProgress = {
    name: "u.bin",
    phase: "sending",
    size: 10 * MiB,
    parts: 10,
    partsDone: 6,
    bytesDone: 6 * MiB,
    partsPresent: 4,
    bytesPresent: 4 * MiB,
    bytesInFlight: MiB / 2,
    copiesPresent: 12,
    copiesSent: 7,
    bytesSent: 7 * MiB,
    failovers: 1,
    elapsedMs: 1_000,
  };
  const state = uploadProgressState(p);
  assert.deepEqual(
    [state.bytesTotal, state.bytesPresent, state.bytesDone, state.bytesMoved],
    [10 * MiB, 4 * MiB, 2 * MiB, 2.5 * MiB],
  );
  assert.deepEqual([state.partsTotal, state.partsPresent, state.partsDone], [10, 4, 2]);
  assert.equal(state.failovers, 1);
  assert.equal(state.activity, undefined);
  assert.match(uploadProgressState({ ...p, phase: "publishing" }).activity ?? "", /publishing/);
});

Deno.test("repairProgressState() shows the re-hash, then the copies, and skips a step with nothing to do", () => {
  const p: RepairProgress = {
    phase: "verify",
    verifyTotal: 8,
    verifyBytesTotal: 8 * PART,
    verified: 3,
    bytesVerified: 3 * PART,
    corrupt: 1,
    copyTotal: 0,
    copyBytesTotal: 0,
    copied: 0,
    bytesCopied: 0,
    bytesCopying: 0,
    failedCopies: 0,
  };
  const verify = repairProgressState("scrub", p)!;
  assert.equal(verify.label, "scrub: re-hashing");
  assert.deepEqual([verify.bytesDone, verify.bytesTotal, verify.partsDone], [
    3 * PART,
    8 * PART,
    3,
  ]);
  assert.equal(verify.note, "1 corrupt");
  assert.equal(repairProgressState("scrub", { ...p, phase: "copy" }), undefined);
  const copy = repairProgressState("repair", {
    ...p,
    phase: "copy",
    corrupt: 0,
    copyTotal: 4,
    copyBytesTotal: 4 * PART,
    copied: 1,
    bytesCopied: PART,
    bytesCopying: PART / 2,
    failedCopies: 2,
  })!;
  assert.equal(copy.label, "repair: copying");
  assert.deepEqual([copy.bytesDone, copy.bytesMoved, copy.failovers], [PART, 1.5 * PART, 2]);
  assert.match(
    repairProgressState("repair", { ...p, phase: "census" })!.activity ?? "",
    /census|instance/,
  );
});

Deno.test("upload, repair, scrub: progress lines on a pipe, JSON lines with --json, a bar in a terminal (4 servers, R=2)", async (t) => {
  const cluster = await startCluster({
    servers: 4,
    replicas: 2,
    partSize: "256KiB",
    files: { "base.bin": 2 * MiB },
    // No self-healing: this test's repair must find the work to do.
    clusterArgs: ["--heal-after", "0"],
  });
  const src = join(cluster.work, "src");
  try {
    await t.step(
      "upload: plain lines count the parts the instances already hold apart",
      async () => {
        // The first 4 parts are base.bin's: every instance that should hold them already does.
        const base = await Deno.readFile(join(src, "base.bin"));
        await writeRandomFile(join(src, "tail.bin"), MiB, 7);
        const tail = await Deno.readFile(join(src, "tail.bin"));
        const path = join(src, "ext.bin");
        await Deno.writeFile(path, new Uint8Array([...base.subarray(0, MiB), ...tail]));
        // 4 parts x 2 copies to send at 512 KiB/s: a few seconds, so plain lines (every 2 s) appear.
        const up = await cluster.fts(["upload", path, "--operator", "--limit-rate", "512KiB"]);
        assert.equal(up.code, 0, up.stderr);
        // The operator's identity is created on first use and says so; the rest is progress.
        const lines = up.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("created "));
        assert.ok(lines.length >= 1, `no progress lines: ${up.stderr}`);
        // The last phases (checking holders, publishing) show their own line when a tick falls
        // in them (a busy machine); every other line is progress.
        const activities = [
          "upload ext.bin: checking that every copy's instance is up",
          "upload ext.bin: publishing",
        ];
        const progress = lines.filter((line) => !activities.includes(line));
        assert.ok(progress.length >= 1, `no progress lines: ${up.stderr}`);
        for (const line of progress) {
          assert.match(
            line,
            /^upload ext\.bin: .*\/s, ETA .*, parts .*of 8, copies \d+ sent\/\d+ present$/,
          );
          assert.ok(!line.includes("\x1b"), "no escape codes on a pipe");
        }
        // By the first line, the present parts (checked first, nothing to send) are known.
        assert.match(
          progress.at(-1)!,
          /\/1\.0 MiB \(\d+\.\d%\) \+ 1\.0 MiB already present, .*parts 4 present \+ \d done of 8/,
        );
        // The closing line and its numbers are unchanged.
        assert.match(
          up.stdout,
          /^uploaded .* as ext\.bin: 2\.0 MiB in 8 parts, 2 verified copies each \(8 sent, 8 were already stored\)/,
        );
      },
    );

    await t.step("upload --json: JSON progress lines on stderr, the result on stdout", async () => {
      const path = join(src, "j.bin");
      await writeRandomFile(path, MiB, 8);
      const up = await cluster.fts([
        "upload",
        path,
        "--operator",
        "--limit-rate",
        "512KiB",
        "--json",
      ]);
      assert.equal(up.code, 0, up.stderr);
      const progress = _jsonLines(up.stderr).filter((o) => o.type === "progress");
      assert.ok(progress.length >= 1, `no JSON progress lines: ${up.stderr}`);
      for (const p of progress) {
        assert.equal(p.label, "upload j.bin");
        assert.deepEqual([p.bytesTotal, p.partsTotal, p.bytesPresent], [MiB, 4, 0]);
        assert.ok((p.bytesDone as number) <= MiB && (p.partsDone as number) <= 4);
        assert.equal(typeof p.bytesPerSecond, "number");
      }
      const result = JSON.parse(up.stdout);
      assert.deepEqual([result.ok, result.parts, result.copiesSent], [true, 4, 8]);
    });

    const [victim, ...live] = cluster.ports as [number, ...number[]];
    await t.step(
      "repair: plain lines of the copies being made, and the copy lines on stdout",
      async () => {
        // The parts the victim holds are the copies to make. At this rate copying them takes
        // about 5 s, whatever their number, so plain lines (every 2 s) appear.
        const manifest = await readManifestJson(cluster.dir);
        const held = new Set(
          Object.values(manifest.files).flatMap((f) =>
            f.parts.filter((p) => p.replicas.includes(String(victim))).map((p) => p.digest)
          ),
        );
        assert.ok(held.size > 0, "the victim holds parts");
        const rate = Math.ceil((held.size * PART) / 5);
        await cluster.kill(victim);
        const repair = await cluster.fts(["repair", "--limit-rate", String(rate)]);
        assert.equal(repair.code, 0, repair.stdout + repair.stderr);
        const copied = repair.stdout.split("\n").filter((l) => /^copied part \d+ of /.test(l));
        assert.ok(copied.length > 0, repair.stdout);
        const lines = repair.stderr.split("\n").filter((l) => l !== "");
        assert.ok(lines.length >= 1, `no progress lines: ${repair.stderr}\n${repair.stdout}`);
        for (const line of lines) {
          // Every copy to make is counted from the start: the total is the copies it made.
          assert.match(
            line,
            new RegExp(
              `^repair: copying: .*/${
                formatBytes(copied.length * PART).replace(".", "\\.")
              } \\(\\d+\\.\\d%\\), .*/s, ETA .*, parts \\d+ done of ${copied.length}$`,
            ),
          );
        }
        assert.match(repair.stdout, /^repair: .*\b\d+ copies made \(.*\), manifest updated/m);
      },
    );

    await t.step(
      "scrub --json: re-hash progress and a corrupt copy as JSON lines; the report unchanged",
      async () => {
        const manifest = await readManifestJson(cluster.dir);
        const part = manifest.files["j.bin"]!.parts[1]!;
        const id = part.replicas.find((r) => r !== String(victim))!;
        await damageFile(storedPartPath(cluster.dir, id, part.digest), 100, 32);
        const scrub = await cluster.fts(["scrub", "--hash-rate", "2MiB", "--json"]);
        assert.equal(scrub.code, 0, scrub.stdout + scrub.stderr);
        const report = JSON.parse(scrub.stdout);
        const lines = _jsonLines(scrub.stderr);
        const progress = lines.filter((o) =>
          o.type === "progress" && o.label === "scrub: re-hashing"
        );
        assert.ok(progress.length >= 1, `no JSON progress lines: ${scrub.stderr}`);
        let before = 0;
        for (const p of progress) {
          assert.equal(p.partsTotal, report.verified);
          assert.equal(p.bytesTotal, report.bytesVerified);
          assert.ok((p.bytesDone as number) >= before, "bytes done never go back");
          before = p.bytesDone as number;
        }
        const corrupt = lines.filter((o) => o.type === "corrupt");
        assert.deepEqual(corrupt.map((o) => [o.id, o.digest]), [[id, part.digest]]);
        assert.ok(lines.some((o) => o.type === "copy" && o.to !== undefined), scrub.stderr);
        assert.equal(report.corrupt.length, 1);
        assert.equal(report.copied, 1);
        assert.deepEqual(report.live, live.map(String));
      },
    );

    await t.step({
      name: "scrub: a bar in a real terminal, redrawn in place and cleared at the end (tmux)",
      ignore: missingTool("tmux"),
      fn: async () => {
        const term = new TmuxTerminal();
        try {
          await term.start(["scrub", "--hash-rate", "2MiB", "--data", cluster.dir], {
            columns: 120,
            rows: 12,
            env: { NO_COLOR: "1" },
          });
          const screen = await term.waitFor(/scrub: re-hashing \[#+-*\] \d+\.\d% /);
          const bars = screen.split("\n").filter((l) => l.startsWith("scrub: re-hashing ["));
          assert.equal(bars.length, 1, `one bar, redrawn in place:\n${screen}`);
          assert.match(bars[0]!, /\/s {2}ETA .* {2}parts \d+\/\d+/);
          const done = await term.waitFor(/\[exit 0\]/);
          assert.match(done, /^scrub: \d+ copies re-hashed \(.*\) \(3\/4 instances up/m);
          assert.ok(!done.includes("re-hashing ["), `the bar is cleared:\n${done}`);
        } finally {
          await term.close();
        }
      },
    });
  } finally {
    await cluster.stop();
  }
});
