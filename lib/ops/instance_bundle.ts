/**
 * The script instances start from: `fts serve` and the modules it imports,
 * bundled by `deno bundle` into one JavaScript file, built once per version of
 * the sources and kept in a cache directory.
 *
 * Why: a host starts 50 instances at once on a few cores, and each paid for
 * resolving, reading and compiling about 70 TypeScript modules one by one.
 * From one bundle an instance measured 6 MB less resident (38 MB against 44)
 * and 20-25 % less CPU until ready. The bundle is keyed by the SHA-256 of
 * Deno's version and every source file under lib/ and commands/, so an
 * edited tree gets a new bundle and never runs stale code. Building one takes
 * about 0.3 s; when it cannot be built, instances start from main.ts as
 * before, and the reason is given once.
 */
import { sha256Hasher } from "../hash/sha256.ts";
import { fromFileUrl, join } from "../base/paths.ts";
import { tempPathBeside } from "../base/fs_util.ts";
import { DENO_RUN_FLAGS, ftsCommand, INSTANCE_V8_FLAGS } from "../base/spawn.ts";

/** What the bundle's file name starts with; the key and `.js` follow. */
export const INSTANCE_BUNDLE_PREFIX = "fts-instance-";

const _LIB_DIR = new URL("../", import.meta.url);
const _COMMANDS_DIR = new URL("../../commands/", import.meta.url);

/** Hex digits of the key in the file name: enough to tell versions apart. */
const _KEY_DIGITS = 16;

/** Bundles of other source versions older than this are removed when a new one is built. */
const _STALE_BUNDLE_AGE_MS = 24 * 60 * 60 * 1_000;

/** The bundle's entry: runs `fts serve` as main.ts would (help, errors, exit code). */
function _entrySource(): string {
  const serve = new URL("serve.ts", _COMMANDS_DIR).href;
  const runner = new URL("ui/run_command.ts", _LIB_DIR).href;
  return [
    `import { EXAMPLE, run, USAGE } from ${JSON.stringify(serve)};`,
    `import { runCommand } from ${JSON.stringify(runner)};`,
    `const [command, ...args] = Deno.args;`,
    `if (command !== "serve") {`,
    `  console.error(\`fts: this script runs "fts serve" only, not "\${command}"\`);`,
    `  Deno.exit(2);`,
    `}`,
    `Deno.exit(await runCommand("serve", { EXAMPLE, run, USAGE }, args));`,
    ``,
  ].join("\n");
}

/**
 * Every TypeScript file under `dir`, sorted by path. Listed and read
 * synchronously: some 170 small files, which async reads took 60-400 ms to
 * get through on a loaded machine, against about 15 ms this way.
 */
function _sources(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(..._sources(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) found.push(path);
  }
  return found.sort();
}

/** The key of this Deno and these sources: their bytes hashed as read, never joined as text. */
async function _key(): Promise<string> {
  const hash = await sha256Hasher();
  hash.update(`${Deno.version.deno}\0${_entrySource()}`);
  for (
    const path of [..._sources(fromFileUrl(_LIB_DIR)), ..._sources(fromFileUrl(_COMMANDS_DIR))]
  ) {
    hash.update(`\0${path}\0`);
    hash.update(Deno.readFileSync(path));
  }
  return hash.digest("hex").slice(0, _KEY_DIGITS);
}

/** Where bundles are kept: $XDG_CACHE_HOME/fts, ~/.cache/fts, else `fallbackDir`. */
function _cacheDir(fallbackDir: string): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "fts");
  const home = Deno.env.get("HOME");
  return home ? join(home, ".cache", "fts") : fallbackDir;
}

async function _build(path: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fts-bundle-" });
  try {
    const entry = join(dir, "serve_entry.ts");
    await Deno.writeTextFile(entry, _entrySource());
    const temp = tempPathBeside(path);
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--no-config", "--platform", "deno", "-o", temp, entry],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { DENO_NO_UPDATE_CHECK: "1" },
    }).output();
    if (!result.success) {
      await Deno.remove(temp).catch(() => {});
      const said = new TextDecoder().decode(result.stderr).trim().split("\n").at(-1);
      throw new Error(`deno bundle exited with code ${result.code}: ${said || "no output"}`);
    }
    // Whole or not at all: a concurrent start finds either no file or this one.
    await Deno.rename(temp, path);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Removes other versions' bundles that nobody has started from for a day. */
async function _removeStale(dir: string, keep: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.startsWith(INSTANCE_BUNDLE_PREFIX) || entry.name === keep) continue;
    const path = join(dir, entry.name);
    const stat = await Deno.stat(path).catch(() => undefined);
    const used = stat?.atime ?? stat?.mtime;
    if (used && Date.now() - used.getTime() > _STALE_BUNDLE_AGE_MS) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

let _bundle: Promise<string> | undefined;

/**
 * The path of the bundled instance script for the sources as they are now,
 * built on first use (once per process); rejects when it cannot be built.
 * `fallbackDir` is used when there is no user cache directory.
 */
export function instanceBundle(fallbackDir: string): Promise<string> {
  return _bundle ??= (async () => {
    const dir = _cacheDir(fallbackDir);
    const name = `${INSTANCE_BUNDLE_PREFIX}${await _key()}.js`;
    const path = join(dir, name);
    try {
      await Deno.stat(path);
      return path;
    } catch { /* not built yet */ }
    await Deno.mkdir(dir, { recursive: true });
    await _build(path);
    await _removeStale(dir, name).catch(() => {});
    return path;
  })();
}

let _warned = false;

/**
 * How to start `fts serve` (the caller appends "serve" and its flags): from
 * the bundle, or from main.ts when the bundle cannot be built (said once on
 * stderr) or fts is a `deno compile`d program (one file already).
 */
export async function instanceCommand(
  fallbackDir: string,
): Promise<{ program: string; prefix: string[] }> {
  const plain = ftsCommand({ instance: true });
  if (plain.prefix.length === 0) return plain;
  try {
    const bundle = await instanceBundle(fallbackDir);
    return {
      program: plain.program,
      prefix: ["run", ...DENO_RUN_FLAGS, INSTANCE_V8_FLAGS, bundle],
    };
  } catch (error) {
    if (!_warned) {
      _warned = true;
      console.error(
        `fts: instances start from main.ts, more slowly: no bundle (${
          error instanceof Error ? error.message : String(error)
        })`,
      );
    }
    return plain;
  }
}
