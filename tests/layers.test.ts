/**
 * The shape of the tree, checked: lib/ folders import only the folders below
 * them (lib/README.md lists the floors), commands never import each other, the
 * flag parser stays at the command-line edge, and no file grows past
 * MAX_LIB_FILE_LINES. A change that breaks one of these rules fails here with
 * the file and the import that broke it.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Longest file in lib/: past it, a file holds more than one concern. */
const MAX_LIB_FILE_LINES = 600;
/** Most .ts files allowed directly in lib/ (outside its folders). */
const MAX_LIB_TOP_FILES = 3;

/**
 * Each lib/ folder and the folders it may import. The floors, bottom up:
 * base, hash, wire, state, auth, etcd, then client and server side by side,
 * then gateway and ops side by side, ui; cli is the command-line edge beside them.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  base: [],
  hash: ["base"],
  wire: ["base", "hash"],
  state: ["base", "hash", "wire"],
  auth: ["base", "hash", "wire", "state"],
  etcd: ["base", "hash", "wire", "state", "auth"],
  client: ["base", "hash", "wire", "state", "auth", "etcd"],
  server: ["base", "hash", "wire", "state", "auth", "etcd"],
  gateway: ["base", "hash", "wire", "state", "auth", "etcd", "client"],
  ops: ["base", "hash", "wire", "state", "auth", "etcd", "client", "server"],
  ui: ["base", "hash", "wire", "state", "auth", "etcd", "client", "server", "ops"],
  cli: ["base", "hash", "wire", "state", "etcd"],
};

async function _tsFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...await _tsFiles(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) found.push(path);
  }
  return found.sort();
}

/** The repository-relative paths that `file` imports by relative specifier. */
async function _relativeImports(file: string): Promise<string[]> {
  const text = await Deno.readTextFile(join(ROOT, file));
  const specifiers = [
    ...text.matchAll(/(?:^|\s)(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g),
  ].map((m) => m[1]!);
  return specifiers.map((s) => normalize(join(dirname(file), s)));
}

function _folderOf(libPath: string): string | undefined {
  const parts = relative("lib", libPath).split("/");
  return parts.length > 1 ? parts[0] : undefined;
}

Deno.test("layers: every lib/ folder imports only the folders below it", async () => {
  const wrong: string[] = [];
  for (const file of await _tsFiles("lib")) {
    const from = _folderOf(file);
    if (from === undefined) continue;
    const allowed = MAY_IMPORT[from];
    assert.ok(allowed, `lib/${from}/ is not in MAY_IMPORT: add it with the folders it may use`);
    for (const target of await _relativeImports(file)) {
      if (!target.startsWith("lib/")) continue;
      const to = _folderOf(target);
      if (to === undefined || to === from || allowed.includes(to)) continue;
      wrong.push(`${file} imports ${target} (${from}/ may import ${allowed.join(", ") || "none"})`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("layers: no command imports another command, and only commands parse flags", async () => {
  const wrong: string[] = [];
  for (const file of await _tsFiles("commands")) {
    for (const target of await _relativeImports(file)) {
      if (target.startsWith("commands/")) wrong.push(`${file} imports ${target}`);
    }
  }
  for (const file of await _tsFiles("lib")) {
    if (file.startsWith("lib/cli/")) continue;
    for (const target of await _relativeImports(file)) {
      if (target.startsWith("lib/cli/")) wrong.push(`${file} imports the flag parser ${target}`);
    }
  }
  for (const file of await _tsFiles("bench")) {
    for (const target of await _relativeImports(file)) {
      if (target.startsWith("tests/")) wrong.push(`${file} imports test code ${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test(`layers: lib/ holds at most ${MAX_LIB_TOP_FILES} loose files and none over ${MAX_LIB_FILE_LINES} lines`, async () => {
  const files = await _tsFiles("lib");
  const loose = files.filter((f) => _folderOf(f) === undefined);
  assert.ok(loose.length <= MAX_LIB_TOP_FILES, `loose files in lib/: ${loose.join(", ")}`);
  const long: string[] = [];
  for (const file of files) {
    if (file.endsWith("_wasm.ts")) continue; // generated: one line of base64
    const lines = (await Deno.readTextFile(join(ROOT, file))).split("\n").length - 1;
    if (lines > MAX_LIB_FILE_LINES) long.push(`${file}: ${lines} lines`);
  }
  assert.deepEqual(long, []);
});

Deno.test("layers: code names concepts, not the issues that brought them", async () => {
  const cited: string[] = [];
  for (const file of [...await _tsFiles("lib"), ...await _tsFiles("commands"), "main.ts"]) {
    const lines = (await Deno.readTextFile(join(ROOT, file))).split("\n");
    lines.forEach((line, i) => {
      if (/issue [0-9]/i.test(line)) cited.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(cited, []);
});
