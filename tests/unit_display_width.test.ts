/**
 * Terminal columns, not UTF-16 units: CJK and fullwidth characters take two
 * columns, emoji two, combining marks and zero-width characters none. The
 * helper, the line fitting built on it, the progress bar, and `fts ls`
 * columns with such names.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  displayWidth,
  padEndColumns,
  padStartColumns,
  truncateColumns,
} from "../lib/base/display_width.ts";
import { padVisible, paint, truncateVisible, visibleLength } from "../lib/base/terminal.ts";
import { renderProgressBar } from "../lib/ui/progress.ts";
import { jsonBody } from "../lib/wire/frame.ts";
import { runFts, tempDir } from "./harness.ts";
import { startLyingServer } from "./lying_server.ts";

/** Names of every kind of width, with their width in terminal columns. */
const WIDE_NAMES: [string, number][] = [
  ["plain.bin", 9],
  ["日本語のファイル.bin", 20],
  ["한국어.txt", 10],
  ["ｆｕｌｌ.bin", 12],
  ["😀 party.bin", 12],
  ["cafe\u0301\u0301.bin", 8],
  ["zero\u200bwidth.bin", 13],
  ["❤️.bin", 6],
  ["👨‍👩‍👧.bin", 6],
];

Deno.test("displayWidth() counts CJK and emoji as two columns, combining marks as none", () => {
  for (const [name, width] of WIDE_NAMES) {
    assert.equal(displayWidth(name), width, JSON.stringify(name));
  }
  assert.equal(displayWidth(""), 0);
  assert.equal(padEndColumns("日本", 6), "日本  ");
  assert.equal(padStartColumns("e\u0301", 3), "  e\u0301");
  assert.equal(padEndColumns("日本語", 4), "日本語", "never cut by padding");
});

Deno.test("truncateColumns() and truncateVisible() cut between graphemes, within the columns", () => {
  // A wide character that would straddle the edge is left out, not split.
  assert.equal(truncateColumns("日本語", 5), "日本");
  assert.equal(truncateColumns("cafe\u0301s", 4), "cafe\u0301", "the accent stays on its e");
  assert.equal(truncateColumns("👨‍👩‍👧x", 2), "👨‍👩‍👧", "a ZWJ sequence is never split");
  const painted = `${paint("日本語", "bold", true)} tail`;
  assert.equal(visibleLength(painted), 11);
  const cut = truncateVisible(painted, 4);
  assert.equal(visibleLength(cut), 4);
  assert.ok(cut.endsWith("\x1b[0m"), "an open style is closed");
  assert.equal(visibleLength(padVisible("日本", 7)), 7);
});

Deno.test("renderProgressBar() fits the terminal with a CJK or emoji name", () => {
  for (const [name] of WIDE_NAMES) {
    for (const columns of [40, 60, 80, 120]) {
      const line = renderProgressBar(
        {
          label: `fetch ${name.repeat(3)}`,
          bytesTotal: 1000,
          bytesDone: 400,
          partsTotal: 10,
          partsDone: 4,
        },
        { bytesPerSecond: 100, etaMs: 6000 },
        columns,
      );
      assert.ok(
        displayWidth(line) <= columns - 1,
        `${displayWidth(line)} > ${columns - 1}: ${line}`,
      );
    }
  }
});

Deno.test("fts ls lines its columns up in terminal columns with CJK, emoji and combining names", async () => {
  const work = await tempDir("fts-wide-");
  const liar = startLyingServer((request) =>
    request.op === "file.list"
      ? {
        header: { op: "files", generation: 1 },
        body: jsonBody(
          WIDE_NAMES.map(([name]) => ({
            name,
            size: 1234,
            parts: 1,
            owner: "オペレーター",
            created: "",
          })),
        ),
      }
      : undefined
  );
  try {
    const listed = await runFts(["ls", "--server", liar.address, "--data", join(work, "no")]);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.trimEnd().split("\n");
    assert.equal(lines.length, WIDE_NAMES.length + 1);
    // SIZE ends, and OWNER starts, at the same terminal column on every line.
    const sizeEnd = (line: string) => {
      const match = /SIZE|1\.2 KiB/.exec(line)!;
      return displayWidth(line.slice(0, match.index + match[0].length));
    };
    const ownerAt = (line: string) => displayWidth(line.slice(0, line.search(/OWNER|オ/)));
    for (const line of lines) {
      assert.equal(sizeEnd(line), sizeEnd(lines[0]!), JSON.stringify(lines));
      assert.equal(ownerAt(line), ownerAt(lines[0]!), JSON.stringify(lines));
    }
  } finally {
    await liar.stop();
    await Deno.remove(work, { recursive: true });
  }
});
