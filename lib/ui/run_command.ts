/**
 * Running one fts command the way every entry point does (main.ts, and the
 * bundled script instances start from): `--help` prints its usage, and an
 * error becomes one line a person can act on and the exit code: 2 for bad
 * usage, 130 when interrupted, 1 otherwise.
 */
import { printable } from "../base/printable.ts";
import { causeChain, UsageError } from "../wire/errors.ts";
import { OutputError } from "../base/output_error.ts";
import { errorLine } from "./hints.ts";

/** A command module: USAGE and EXAMPLE (one or more lines) are what `fts COMMAND --help` shows. */
export type Command = { run(args: string[]): Promise<number>; USAGE: string; EXAMPLE?: string };

let _guarded = false;

/**
 * Makes console.log throw OutputError when standard output cannot be
 * written (a reader that went away is left as Deno handles it), so that the
 * error says so instead of blaming the command's own files. Idempotent.
 */
function _guardStandardOutput(): void {
  if (_guarded) return;
  _guarded = true;
  const log = console.log.bind(console);
  console.log = (...data: unknown[]) => {
    try {
      log(...data);
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) throw error;
      throw new OutputError(error);
    }
  };
}

/** Runs `fts NAME ARGS...` with `command`; returns the exit code. */
export async function runCommand(name: string, command: Command, args: string[]): Promise<number> {
  _guardStandardOutput();
  try {
    return await _run(name, command, args);
  } catch (error) {
    // Only standard output failing escapes _run: nothing more can be said there.
    if (!(error instanceof OutputError)) throw error;
    console.error(`fts ${name}: ${printable(error.message)}`);
    return 1;
  }
}

async function _run(name: string, command: Command, args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`Usage: ${command.USAGE}`);
    if (command.EXAMPLE) {
      console.log(
        `\n${command.EXAMPLE.includes("\n") ? "Examples" : "Example"}:\n${
          command.EXAMPLE.split("\n").map((l) => `  ${l}`).join("\n")
        }`,
      );
    }
    console.log(
      command.USAGE.includes("--data")
        ? "\n--data DIR picks the data directory; --verbose shows the cause of an error."
        : "\n--verbose shows the cause of an error.",
    );
    if (command.USAGE.includes("--etcd URLS")) {
      console.log(
        "--etcd URLS (or FTS_ETCD) names etcd's endpoints; --etcd-ca FILE (or FTS_ETCD_CA) " +
          "checks an etcd on https.",
      );
    }
    return 0;
  }
  const verbose = args.includes("--verbose");
  try {
    return await command.run(args.filter((arg) => arg !== "--verbose"));
  } catch (error) {
    // Scripts that asked for --json get the error as JSON on stdout too.
    const json = args.includes("--json");
    if (error instanceof UsageError) {
      console.error(`fts ${name}: ${_usageMessage(error.message, command.USAGE)}`);
      _tryLog(json, { ok: false, error: error.message, exitCode: 2 });
      return 2;
    }
    if (error instanceof DOMException && error.name === "AbortError") {
      // Plain "Interrupted", or what the command says it kept.
      const line = error.message === "Interrupted" ? "interrupted" : printable(error.message);
      console.error(`fts ${name}: ${line}`);
      _tryLog(json, { ok: false, error: line, exitCode: 130 });
      return 130;
    }
    // One line a person can act on; --verbose adds the cause chain.
    // Messages may quote names and replies from the network: escaped before printing.
    const line = printable(errorLine(error));
    // A cause that only repeats the message ("No file named ...") is no news.
    const causes = causeChain(error).slice(1).filter((cause) => !line.includes(cause));
    console.error(
      `fts ${name}: ${line}` + (!verbose && causes.length > 0 ? " (--verbose for the cause)" : ""),
    );
    if (verbose) {
      for (const cause of causes) console.error(`  caused by: ${printable(cause)}`);
      if (error instanceof Error && error.stack) console.error(error.stack);
    }
    _tryLog(json, { ok: false, error: line, causes, exitCode: 1 });
    return 1;
  }
}

/** With --json, the error as JSON on stdout too, unless stdout is what failed. */
function _tryLog(json: boolean, value: unknown): void {
  if (!json) return;
  try {
    console.log(JSON.stringify(value));
  } catch { /* the line on stderr said it */ }
}

/**
 * A usage error's message, escaped for the terminal except for the
 * command's own usage text at its end: that is fts's, and two lines long for
 * some commands.
 */
function _usageMessage(message: string, usage: string): string {
  if (!message.endsWith(usage)) return printable(message);
  return printable(message.slice(0, message.length - usage.length)) + usage;
}
