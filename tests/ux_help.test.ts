import assert from "node:assert/strict";
import { closestMatch, editDistance } from "../lib/base/closest_match.ts";
import { parseFlags } from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { runFts } from "./harness.ts";

Deno.test("closestMatch() suggests near misses and unique prefixes, and nothing far off", () => {
  const commands = ["serve", "preload", "cluster", "fetch", "kill", "start", "ls", "status"];
  assert.equal(closestMatch("fecth", commands), "fetch");
  assert.equal(closestMatch("stauts", commands), "status");
  assert.equal(closestMatch("clust", commands), "cluster");
  assert.equal(closestMatch("lz", commands), "ls");
  assert.equal(closestMatch("upload-everything", commands), undefined);
  assert.equal(closestMatch("x", commands), undefined);
});

/** The whole table, as editDistance() worked before it stopped at a limit: the reference. */
function _fullTableDistance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      }
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

Deno.test("editDistance() with a limit agrees with the whole table up to it", () => {
  // Two letters and short words: the most ties, swaps and shared ends.
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const word = () =>
    Array.from({ length: Math.floor(random() * 9) }, () => random() < 0.5 ? "a" : "b").join("");
  for (let n = 0; n < 20_000; n++) {
    const [a, b, max] = [word(), word(), Math.floor(random() * 4)];
    const expected = _fullTableDistance(a, b);
    assert.equal(editDistance(a, b), expected, `${a} ${b}`);
    assert.equal(editDistance(a, b, max), Math.min(expected, max + 1), `${a} ${b} within ${max}`);
  }
  assert.equal(editDistance("fecth", "fetch", 2), 1);
  assert.equal(editDistance("x".repeat(300), "y".repeat(300), 2), 3);
});

Deno.test("closestMatch() finds a typo among many long names that share most of their letters", () => {
  const names = Array.from(
    { length: 20_000 },
    (_, i) => `${"y".repeat(100)}${i}${"y".repeat(100)}`,
  );
  assert.equal(closestMatch(`${"y".repeat(100)}1234z${"y".repeat(100)}`, names), names[1234]);
  assert.equal(closestMatch(`${"y".repeat(100)}abcdef${"y".repeat(100)}`, names), undefined);
  assert.equal(closestMatch("z".repeat(250), names), undefined);
});

Deno.test("parseFlags() names an unknown flag with the nearest known one", () => {
  const spec = { parallel: { type: "string" as const }, quiet: { type: "boolean" as const } };
  assert.throws(() => parseFlags(["--paralel", "3"], spec), (error: unknown) => {
    assert.ok(error instanceof UsageError);
    assert.equal(
      error.message,
      "Unknown flag --paralel; did you mean --parallel? (--help lists the flags)",
    );
    return true;
  });
  assert.throws(() => parseFlags(["--zzz"], spec), /^UsageError: Unknown flag --zzz \(--help/);
  assert.throws(() => parseFlags(["--parallel"], spec), /--parallel needs a value/);
  assert.throws(() => parseFlags(["--quiet=yes"], spec), /--quiet takes no value/);
});

Deno.test("fts --help lists every command with an example; fts --version", async () => {
  const help = await runFts(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: fts COMMAND/);
  assert.match(help.stdout, /\bdemo\b/);
  assert.match(help.stdout, /Example: fts preload/);
  const version = await runFts(["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^fts \d+\.\d+\.\d+\n$/);
});

Deno.test("fts COMMAND --help shows its usage and an example for every command", async () => {
  const help = await runFts(["--help"]);
  const names = [...help.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]!);
  assert.ok(names.length >= 9, `commands listed: ${names.join(", ")}`);
  const missing: string[] = [];
  await Promise.all(names.map(async (name) => {
    const result = await runFts([name, "--help"]);
    assert.equal(result.code, 0, `${name} --help: ${result.stderr}`);
    assert.match(result.stdout, new RegExp(`^Usage: fts ${name}\\b`), name);
    if (!new RegExp(`Examples?:\\n {2}.*fts ${name}\\b|deno task ${name}`).test(result.stdout)) {
      missing.push(name);
    }
  }));
  assert.deepEqual(missing, [], `commands without an example (export EXAMPLE): ${missing}`);
});

Deno.test("fts help COMMAND is fts COMMAND --help", async () => {
  const [help, flag] = await Promise.all([runFts(["help", "ls"]), runFts(["ls", "--help"])]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: fts ls /);
  assert.equal(help.stdout, flag.stdout);
});

Deno.test("a mistyped command or flag gets a suggestion and exit code 2", async () => {
  const command = await runFts(["stauts"]);
  assert.equal(command.code, 2);
  assert.match(command.stderr, /unknown command "stauts"; did you mean "status"\?/);
  const flag = await runFts(["fetch", "a.bin", "--paralel", "3"]);
  assert.equal(flag.code, 2);
  assert.equal(
    flag.stderr,
    "fts fetch: Unknown flag --paralel; did you mean --parallel? (--help lists the flags)\n",
  );
  const value = await runFts(["status", "--data"]);
  assert.equal(value.code, 2);
  assert.match(value.stderr, /--data needs a value/);
  const json = await runFts(["ls", "--jsno"]);
  assert.equal(json.code, 2);
  assert.match(json.stderr, /did you mean --json\?/);
});
