/**
 * The tools some tests run that a fresh machine (Node and npm only) may lack,
 * and the Debian package of each. A test that runs one takes its `ignore`
 * value from missingTool() or unusableTool(): where the tool is missing, or
 * present but unable to work here, the test is reported as ignored and one
 * line on standard error says why and what to install. `.ci/run` installs
 * every package listed here (`deno run -A tests/missing_tool.ts` prints the
 * missing ones) and fails when any test was ignored, so CI still runs them all.
 */
import { join } from "node:path";

/** Each tool a test runs, and the Debian package that brings it. */
export const TOOL_PACKAGES = {
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  ip: "iproute2",
  tc: "iproute2",
  openssl: "openssl",
  strace: "strace",
  tmux: "tmux",
  unshare: "util-linux",
  mount: "mount",
  xxhsum: "xxhash",
  curl: "curl",
  wget: "wget",
  aria2c: "aria2",
  chromium: "chromium",
  /** A Python module, not a program: imported by Debian's python3. */
  fusepy: "python3-fusepy",
  /** A library, not a program: found through the dynamic loader's cache. */
  "libxxhash.so.0": "libxxhash0",
  "libcrypto.so.3": "libssl3",
} as const;

export type Tool = keyof typeof TOOL_PACKAGES;

/** Where ldconfig may live: /sbin is not on every user's PATH. */
const _LDCONFIG_PATHS = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"];

/** Tools this module has already said something about: one line per tool. */
const _said = new Set<Tool>();

function _say(tool: Tool, line: string): void {
  if (_said.has(tool)) return;
  _said.add(tool);
  console.error(line);
}

function _onPath(program: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(join(dir, program));
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return true;
    } catch {
      // Not in this directory: the next.
    }
  }
  return false;
}

function _loaderKnows(library: string): boolean {
  for (const ldconfig of _LDCONFIG_PATHS) {
    try {
      const { stdout } = new Deno.Command(ldconfig, { args: ["-p"], stderr: "null" }).outputSync();
      return new TextDecoder().decode(stdout).includes(library);
    } catch {
      // Not there: the next.
    }
  }
  return false;
}

/** Whether Debian's python3 imports `module`. */
function _pythonHas(module: string): boolean {
  try {
    const { code } = new Deno.Command("/usr/bin/python3", {
      args: ["-c", `import ${module}`],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return code === 0;
  } catch {
    return false;
  }
}

function _present(tool: Tool): boolean {
  if (tool === "fusepy") return _pythonHas(tool);
  return tool.startsWith("lib") ? _loaderKnows(tool) : _onPath(tool);
}

/**
 * The `ignore` value of a test that runs `tool`: true where it is missing, and
 * then (once per tool) a line on stderr naming the package to install.
 */
export function missingTool(tool: Tool): boolean {
  if (_present(tool)) return false;
  _say(tool, `ignored: ${tool} not found (apt-get install ${TOOL_PACKAGES[tool]})`);
  return true;
}

/**
 * The `ignore` value of a test that needs `tool` to work, not only to exist:
 * as missingTool(), and also true where `works` says it cannot work here (a
 * container forbidding ptrace, say), with `why` on stderr.
 */
export async function unusableTool(
  tool: Tool,
  works: () => Promise<boolean>,
  why: string,
): Promise<boolean> {
  if (missingTool(tool)) return true;
  if (await works().catch(() => false)) return false;
  _say(tool, `ignored: ${tool} cannot work here (${why})`);
  return true;
}

if (import.meta.main) {
  const tools = Object.keys(TOOL_PACKAGES) as Tool[];
  const packages = tools.filter((tool) => !_present(tool)).map((tool) => TOOL_PACKAGES[tool]);
  // The Debian packages to install, one per line; nothing when all are here.
  for (const name of new Set(packages)) console.log(name);
}
