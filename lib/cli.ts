/** Shared pieces of the command-line layer: flag parsing and output helpers. */
import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";
import { parseDurationMs, parseSize } from "./units.ts";

type FlagSpec = {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
};

export type ParsedFlags = {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
};

/** Parses flags strictly: unknown flags and missing values are usage errors. */
export function parseFlags(args: string[], spec: Record<string, FlagSpec>): ParsedFlags {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...spec, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedFlags["values"], positionals };
  } catch (cause) {
    const message = cause instanceof Error ? cause.message.split("\n")[0]! : String(cause);
    throw new UsageError(message.replace(/^Unknown option/, "Unknown flag"), { cause });
  }
}

export function stringFlag(flags: ParsedFlags, name: string): string | undefined {
  const value = flags.values[name];
  return typeof value === "string" ? value : undefined;
}

export function listFlag(flags: ParsedFlags, name: string): string[] {
  const value = flags.values[name];
  return Array.isArray(value) ? value.map(String) : typeof value === "string" ? [value] : [];
}

export function boolFlag(flags: ParsedFlags, name: string): boolean {
  return flags.values[name] === true;
}

/** An integer flag within bounds, or undefined when absent. */
export function intFlag(
  flags: ParsedFlags,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

export function sizeFlag(flags: ParsedFlags, name: string): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  try {
    return parseSize(text);
  } catch (cause) {
    throw new UsageError(`--${name}: ${(cause as Error).message}`, { cause });
  }
}

export function durationFlag(flags: ParsedFlags, name: string): number | undefined {
  const text = stringFlag(flags, name);
  if (text === undefined) return undefined;
  try {
    return parseDurationMs(text);
  } catch (cause) {
    throw new UsageError(`--${name}: ${(cause as Error).message}`, { cause });
  }
}

/** Throws a usage error unless the positional count is within bounds. */
export function expectPositionals(
  flags: ParsedFlags,
  min: number,
  max: number,
  usage: string,
): string[] {
  const { positionals } = flags;
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(
      positionals.length < min
        ? `Missing argument; usage: ${usage}`
        : `Too many arguments; usage: ${usage}`,
    );
  }
  return positionals;
}

const encoder = new TextEncoder();

/** Writes to stderr without a newline (for progress lines). */
export function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

export function isTerminal(stream: { isTerminal(): boolean }): boolean {
  try {
    return stream.isTerminal();
  } catch {
    return false;
  }
}

/** The port flag of kill/start: a positional PORT. */
export function parsePort(text: string | undefined): number {
  const port = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new UsageError(`Expected a port number from 1 to 65535, got "${text ?? ""}"`);
  }
  return port;
}
