import { firstNonUtf8Argument } from "../lib/cli/raw_args.ts";
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { listFlag, parseFlags } from "../lib/cli/flags.ts";
import { UsageError } from "../lib/wire/errors.ts";
import { newSeed, pick, randomInt, seededRandom } from "./seeded_random.ts";

/** The shapes commands use: string, repeated string, booleans with short aliases. */
const SPEC = {
  data: { type: "string" as const },
  server: { type: "string" as const, multiple: true },
  quiet: { type: "boolean" as const, short: "q" },
  watch: { type: "boolean" as const, short: "w" },
  json: { type: "boolean" as const },
  out: { type: "string" as const, short: "o" },
};

function usageError(message: RegExp | string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${error}`);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  };
}

Deno.test("parseFlags() reads values spaced, attached with =, short, grouped and repeated", () => {
  const flags = parseFlags(
    ["a", "--data", "d1", "--server=s1", "b", "-qw", "--server", "s2", "--data=", "-oFILE", "c"],
    SPEC,
  );
  assert.deepEqual({ ...flags.values }, {
    data: "",
    server: ["s1", "s2"],
    quiet: true,
    watch: true,
    out: "FILE",
  });
  assert.deepEqual(flags.positionals, ["a", "b", "c"]);
  assert.deepEqual(listFlag(flags, "server"), ["s1", "s2"]);
  // The last of a repeated single flag wins; "-" is a positional (stdin, by custom).
  assert.deepEqual(parseFlags(["--data", "x", "--data", "y", "-"], SPEC).values.data, "y");
  assert.deepEqual(parseFlags(["-"], SPEC).positionals, ["-"]);
  // -qoVALUE: booleans then a string flag with its value attached; -qo takes the next one.
  assert.deepEqual({ ...parseFlags(["-qoF"], SPEC).values }, { quiet: true, out: "F" });
  assert.deepEqual({ ...parseFlags(["-qo", "F"], SPEC).values }, { quiet: true, out: "F" });
  assert.equal(parseFlags(["-h"], SPEC).values.help, true);
});

Deno.test("parseFlags() treats everything after -- as positional", () => {
  const flags = parseFlags(["--json", "--", "--data", "-q", "--"], SPEC);
  assert.deepEqual({ ...flags.values }, { json: true });
  assert.deepEqual(flags.positionals, ["--data", "-q", "--"]);
});

Deno.test("parseFlags() rejects unknown flags with a suggestion, as a UsageError", () => {
  assert.throws(
    () => parseFlags(["--jsno"], SPEC),
    usageError("Unknown flag --jsno; did you mean --json? (--help lists the flags)"),
  );
  assert.throws(
    () => parseFlags(["--serv=x"], SPEC),
    usageError(/^Unknown flag --serv; did you mean --server\?/),
  );
  assert.throws(() => parseFlags(["-qz"], SPEC), usageError(/^Unknown flag -z\b/));
  assert.throws(() => parseFlags(["-5"], SPEC), usageError(/^Unknown flag -5\b/));
  assert.throws(() => parseFlags(["--verbos"], SPEC), usageError(/did you mean --verbose\?/));
  // Names from Object.prototype are not flags.
  assert.throws(
    () => parseFlags(["--constructor"], SPEC),
    usageError(/^Unknown flag --constructor/),
  );
  assert.throws(() => parseFlags(["--__proto__=x"], SPEC), usageError(/^Unknown flag --__proto__/));
});

Deno.test("parseFlags() rejects a missing value, a value on a boolean, and a flag taken for a value", () => {
  assert.throws(() => parseFlags(["--data"], SPEC), usageError("--data needs a value"));
  assert.throws(() => parseFlags(["-o"], SPEC), usageError("-o needs a value"));
  assert.throws(() => parseFlags(["--quiet=yes"], SPEC), usageError("--quiet takes no value"));
  assert.throws(() => parseFlags(["--json="], SPEC), usageError("--json takes no value"));
  assert.throws(
    () => parseFlags(["--data", "--json"], SPEC),
    usageError(
      '--data needs a value, got the flag-like "--json" (write --data=--json if that is the value)',
    ),
  );
  assert.throws(
    () => parseFlags(["-o", "-q"], SPEC),
    usageError(/^-o needs a value, got the flag-like "-q"/),
  );
  // What the error message offers works.
  assert.equal(parseFlags(["--data=--json"], SPEC).values.data, "--json");
  assert.equal(parseFlags(["--data", "-"], SPEC).values.data, "-");
});

/** Arguments of every kind the parser distinguishes, valid and not. */
const WORDS = [
  "pos",
  "x=y",
  "-",
  "--",
  "--data",
  "--data=v",
  "--data=",
  "--server",
  "--server=s",
  "--quiet",
  "--quiet=1",
  "--json",
  "-q",
  "-w",
  "-h",
  "-qw",
  "-wq",
  "-qh",
  "-o",
  "-oF",
  "-qoF",
  "-qo",
  "-oq",
  "-z",
  "-qz",
  "-5",
  "--zz",
  "--zz=1",
  "---q",
  "--=v",
  "-=",
  "-q=1",
];

Deno.test("parseFlags() accepts and rejects what node:util's strict parseArgs does (random command lines)", () => {
  const seed = newSeed();
  const random = seededRandom(seed);
  const nodeOptions = { ...SPEC, help: { type: "boolean" as const, short: "h" } };
  for (let i = 0; i < 3_000; i++) {
    const args = Array.from({ length: randomInt(random, 0, 6) }, () => pick(random, WORDS));
    const label = `seed ${seed}: ${JSON.stringify(args)}`;
    let expected: { values: Record<string, unknown>; positionals: string[] } | Error;
    try {
      const parsed = parseArgs({
        args,
        options: nodeOptions,
        allowPositionals: true,
        strict: true,
      });
      expected = { values: { ...parsed.values }, positionals: parsed.positionals };
    } catch (error) {
      expected = error as Error;
    }
    let actual: { values: Record<string, unknown>; positionals: string[] } | Error;
    try {
      const parsed = parseFlags(args, SPEC);
      actual = { values: { ...parsed.values }, positionals: parsed.positionals };
    } catch (error) {
      assert.ok(error instanceof UsageError, `${label}: ${error}`);
      actual = error;
    }
    if (expected instanceof Error || actual instanceof Error) {
      assert.ok(expected instanceof Error, `${label}: node accepts, parseFlags says ${actual}`);
      assert.ok(
        actual instanceof Error,
        `${label}: node says ${expected.message}, parseFlags accepts`,
      );
      // Both name the same offending flag.
      const nodeFlag = /'(-[^' ,]*)/.exec(expected.message)?.[1];
      const flag = /^(?:Unknown flag )?(-[^ ;,]*)/.exec(actual.message)?.[1];
      if (/^Unknown option/.test(expected.message)) assert.equal(flag, nodeFlag, label);
    } else {
      assert.deepEqual(actual, expected, label);
    }
  }
});

Deno.test("firstNonUtf8Argument: told apart from a real U+FFFD by the raw command line", () => {
  const raw = (...args: (string | number[])[]) => () =>
    new Uint8Array(args.flatMap((a) => [
      ...(typeof a === "string" ? new TextEncoder().encode(a) : a),
      0,
    ]));
  const unread = () => {
    throw new Error("not read: no argument holds U+FFFD");
  };
  assert.equal(firstNonUtf8Argument(["fetch", "a.bin", "dest"], unread), undefined);
  // "d\xff" on the command line is "d\uFFFD" to the program; a real "e\uFFFD" is UTF-8.
  const line = raw("deno", "run", "fetch", "a.bin", [0x64, 0xff], "e\uFFFD");
  assert.equal(firstNonUtf8Argument(["fetch", "a.bin", "d\uFFFD", "e\uFFFD"], line), "d\uFFFD");
  assert.equal(
    firstNonUtf8Argument(["fetch", "a.bin", "e\uFFFD"], raw("fetch", "e\uFFFD")),
    undefined,
  );
  // Without a raw command line to ask, a U+FFFD is taken for a byte that was not UTF-8.
  const none = () => {
    throw new Deno.errors.NotFound("no /proc");
  };
  assert.equal(firstNonUtf8Argument(["x", "e\uFFFD"], none), "e\uFFFD");
});
