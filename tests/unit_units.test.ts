/** Unit tests of lib/base/units.ts: sizes and durations from people, and back. */
import assert from "node:assert/strict";
import { formatBytes, formatDuration, parseDurationMs, parseSize } from "../lib/base/units.ts";

Deno.test("parseSize() reads plain numbers and binary and decimal units", () => {
  const cases: [string, number][] = [
    ["4096", 4096],
    ["0", 0],
    ["8MiB", 8 * 1024 * 1024],
    ["8mib", 8 * 1024 * 1024],
    ["8M", 8 * 1024 * 1024],
    ["8MB", 8_000_000],
    ["512k", 512 * 1024],
    ["512KiB", 512 * 1024],
    ["512kb", 512_000],
    ["1.5GB", 1_500_000_000],
    ["1.5GiB", 1.5 * 1024 ** 3],
    ["2TiB", 2 * 1024 ** 4],
    ["100B", 100],
    [" 64 KiB ", 64 * 1024],
  ];
  for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
});

Deno.test("parseSize() rounds fractional bytes to whole bytes", () => {
  assert.equal(parseSize("1.5"), 2);
  assert.equal(parseSize("0.5KiB"), 512);
});

Deno.test("parseSize() rejects unknown units naming the unit", () => {
  for (const text of ["8XB", "8 bytes", "5mibs", "1kk", "3PiB"]) {
    assert.throws(() => parseSize(text), (error: unknown) => {
      assert.ok(error instanceof SyntaxError, text);
      assert.match(error.message, /unknown unit/);
      assert.ok(error.message.includes(JSON.stringify(text)));
      return true;
    });
  }
});

Deno.test("parseSize() rejects garbage, signs and empty text", () => {
  for (
    const text of ["", " ", "abc", "-1", "+5", "1e6", "1,000", "MiB", "1.", ".5", "0x10", "8 Mi B"]
  ) {
    assert.throws(() => parseSize(text), SyntaxError, JSON.stringify(text));
  }
});

Deno.test("parseSize() rejects a size beyond the safe integer range", () => {
  assert.throws(() => parseSize("99999999999TiB"), RangeError);
});

Deno.test("parseDurationMs() reads ms, s, m, h, d and bare seconds", () => {
  const cases: [string, number][] = [
    ["500ms", 500],
    ["2s", 2000],
    ["1.5s", 1500],
    ["1m", 60_000],
    ["2h", 7_200_000],
    ["7d", 7 * 86_400_000],
    ["3", 3000],
    ["0.25", 250],
    [" 10 s ", 10_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDurationMs(text), ms, text);
});

Deno.test("parseDurationMs() rejects bad text", () => {
  for (const text of ["", "soon", "5 days", "-1s", "1w", "2S", "1m30s", "ms"]) {
    assert.throws(() => parseDurationMs(text), SyntaxError, JSON.stringify(text));
  }
});

Deno.test("formatBytes() picks a binary unit with one decimal below 100", () => {
  const cases: [number, string][] = [
    [0, "0 B"],
    [1, "1 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [1536, "1.5 KiB"],
    [8 * 1024 * 1024, "8.0 MiB"],
    [150 * 1024 * 1024, "150 MiB"],
    [1.5 * 1024 ** 3, "1.5 GiB"],
    [3 * 1024 ** 4, "3.0 TiB"],
    [5000 * 1024 ** 4, "5000 TiB"],
  ];
  for (const [bytes, text] of cases) assert.equal(formatBytes(bytes), text, String(bytes));
});

Deno.test("formatBytes() output parses back to about the same size", () => {
  for (const bytes of [1, 1000, 4096, 123_456_789, 2 ** 40]) {
    const back = parseSize(formatBytes(bytes).replace(" ", ""));
    assert.ok(Math.abs(back - bytes) <= bytes * 0.05, `${bytes} -> ${formatBytes(bytes)}`);
  }
});

Deno.test("formatDuration() shows ms, seconds, minutes and hours", () => {
  assert.equal(formatDuration(250), "250 ms");
  assert.equal(formatDuration(1234), "1.2 s");
  assert.equal(formatDuration(185_000), "3m05s");
  assert.equal(formatDuration(2 * 3_600_000 + 7 * 60_000), "2h07m");
  assert.equal(formatDuration(Infinity), "?");
});

Deno.test("clock() shows the local time of day, as every clock fts shows (TZ respected)", async () => {
  const units = new URL("../lib/base/units.ts", import.meta.url).href;
  const script = `import { clock } from "${units}";` +
    `console.log(clock(Date.parse("2026-01-01T12:00:05Z")));`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: { TZ: "America/New_York", NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(output.stdout).trim(), "07:00:05");
});
