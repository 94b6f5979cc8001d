/** How to run another fts process: the same Deno and main module as this one. */
import { basename, fromFileUrl } from "./paths.ts";

const MAIN_MODULE = new URL("../../main.ts", import.meta.url);

/**
 * How `deno run` starts fts (the `fts` launcher script passes the same). fts
 * takes nothing from a deno.json at run time (no import map; its compiler
 * options serve `deno check`), and its modules are few and small: skipping the
 * config file and V8's code cache database measured 2.4 MB less resident
 * memory per process, with no measurable cost in startup time. A host that
 * runs 50 instances pays that 50 times.
 */
export const DENO_RUN_FLAGS: readonly string[] = [
  "--allow-all",
  "--quiet",
  "--no-config",
  "--no-code-cache",
];

/**
 * V8 flags for instances (`fts serve`) only, which the `fts` launcher passes
 * too. An instance is mostly waiting and its bytes move in Deno's native code,
 * while its memory is paid once per instance. Measured at 10,000 manifest
 * entries (bench/RESULTS.md, "Instance memory"): a young generation of 1 MiB
 * semi-spaces instead of up to 16 (garbage of one reply is swept before the
 * heap grows for it) and no optimizing compilers (their code and memory are
 * not given back) end a hello, 200 file.get and 5 file.list 10-15 MB lower,
 * for no measurable change in the CPU time an instance spends per GiB sent or
 * received. --optimize-for-size would save 5-10 MB more after paged lists but
 * made uploads into the instance 15-25 % slower. Not for clients: a fetch
 * hashes and copies in JavaScript loops that the optimizing compilers speed up.
 */
export const INSTANCE_V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--no-opt,--no-maglev";

/**
 * The program and leading arguments that start `fts` again; `instance` when
 * what it starts is `fts serve` (with INSTANCE_V8_FLAGS).
 */
export function ftsCommand(
  options: { instance?: boolean } = {},
): { program: string; prefix: string[] } {
  const program = Deno.execPath();
  // A `deno compile`d fts is its own program, its V8 flags fixed when it was
  // compiled; otherwise run main.ts with Deno.
  if (!/^deno(\.exe)?$/.test(basename(program))) return { program, prefix: [] };
  const v8 = options.instance ? [INSTANCE_V8_FLAGS] : [];
  return { program, prefix: ["run", ...DENO_RUN_FLAGS, ...v8, fromFileUrl(MAIN_MODULE)] };
}
