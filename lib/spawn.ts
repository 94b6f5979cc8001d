/** How to run another fts process: the same Deno and main module as this one. */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN_MODULE = new URL("../main.ts", import.meta.url);

/** The program and leading arguments that start `fts` again. */
export function ftsCommand(): { program: string; prefix: string[] } {
  const program = Deno.execPath();
  // A `deno compile`d fts is its own program; otherwise run main.ts with Deno.
  if (!/^deno(\.exe)?$/.test(basename(program))) return { program, prefix: [] };
  return { program, prefix: ["run", "--allow-all", "--quiet", fileURLToPath(MAIN_MODULE)] };
}
