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

/** The program and leading arguments that start `fts` again. */
export function ftsCommand(): { program: string; prefix: string[] } {
  const program = Deno.execPath();
  // A `deno compile`d fts is its own program; otherwise run main.ts with Deno.
  if (!/^deno(\.exe)?$/.test(basename(program))) return { program, prefix: [] };
  return { program, prefix: ["run", ...DENO_RUN_FLAGS, fromFileUrl(MAIN_MODULE)] };
}
