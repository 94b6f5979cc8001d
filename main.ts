/**
 * fts: a replicated multi-server file transfer toolkit. This file only picks
 * the subcommand and decides the exit code; each command lives in commands/.
 */
import { closestMatch } from "./lib/base/closest_match.ts";
import { type Command, runCommand } from "./lib/ui/run_command.ts";
import { keepHangupIgnored } from "./lib/base/stop_signal.ts";
import { firstNonUtf8Argument } from "./lib/cli/raw_args.ts";

export const VERSION = "0.1.0";

/**
 * Loads `commands/NAME.ts` when that command runs. The specifier is computed
 * on purpose: Deno reads and checks the whole module graph of every literal
 * `import("...")` as it starts, so 19 literal ones made each fts process load
 * all of fts (etcd, gateway, repair, ...) first: 20-30 ms of CPU per process
 * measured (`fts kill --help` 129-137 ms against 101 ms), paid by every
 * client command and by a cluster's supervisor before its first instance.
 */
function command(name: string): () => Promise<Command> {
  return () => import(new URL(`./commands/${name}.ts`, import.meta.url).href);
}

const COMMANDS: Record<string, { load: () => Promise<Command>; summary: string }> = {
  serve: { load: command("serve"), summary: "run one server instance" },
  preload: {
    load: command("preload"),
    summary: "split files into parts and store them on the instances",
  },
  cluster: {
    load: command("cluster"),
    summary: "start every instance and supervise them",
  },
  fetch: {
    load: command("fetch"),
    summary: "download a file by name (resumes, fails over, verifies)",
  },
  gateway: {
    load: command("gateway"),
    summary: "serve the files over HTTP: curl, wget, browsers, aria2c (Metalink)",
  },
  kill: { load: command("kill"), summary: "end one instance at once (SIGKILL)" },
  start: { load: command("start"), summary: "bring a killed instance back" },
  ls: { load: command("ls"), summary: "list files in the cluster" },
  status: {
    load: command("status"),
    summary: "instances up/down and each file's replica health",
  },
  // --- signed changes: upload, delete, rename by their owners ---
  upload: {
    load: command("upload"),
    summary: "send a file into the running cluster, signed as you",
  },
  rm: { load: command("rm"), summary: "delete a file you own" },
  mv: { load: command("mv"), summary: "rename a file you own" },
  whoami: { load: command("whoami"), summary: "print your identity (key)" },
  writers: {
    load: command("writers"),
    summary: "who may store parts on the cluster, and how much (operator)",
  },
  certs: {
    load: command("certs"),
    summary: "make a cluster CA and a TLS certificate per host",
  },
  forget: {
    load: command("forget"),
    summary: "drop a host gone for good from a cluster in etcd (once healed)",
  },
  migrate: {
    load: command("migrate"),
    summary: "move a one-host cluster's manifest into etcd (parts stay put)",
  },
  demo: {
    load: command("demo"),
    summary: "see it work: a cluster, clients, kills, a resume (about 15 s; cleans up)",
  },
  repair: {
    load: command("repair"),
    summary: "copy under-replicated parts back to R copies, drop surplus ones",
  },
  scrub: {
    load: command("scrub"),
    summary: "re-hash every stored copy, quarantine and repair corrupt ones",
  },
};

function _usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) =>
    `  ${name.padEnd(width)}  ${c.summary}`
  );
  return [
    `fts ${VERSION}: replicated multi-server file transfer`,
    "",
    "Usage: fts COMMAND [flags]   (fts COMMAND --help for its flags)",
    "",
    "Commands:",
    ...lines,
    "",
    "Commands that act on a cluster take --data DIR (default ./fts-data, or $FTS_DATA).",
    "Example: fts preload movie.mkv && fts cluster   then   fts fetch movie.mkv ~/Downloads",
  ].join("\n");
}

/** Prints `text` and returns `code`, or 1 with one line when standard output cannot be written. */
function _printed(text: string, code: number): number {
  try {
    console.log(text);
    return code;
  } catch (error) {
    console.error(`fts: cannot write to standard output: ${(error as Error).message}`);
    return 1;
  }
}

export async function main(args: string[]): Promise<number> {
  // "fts help COMMAND" is "fts COMMAND --help".
  if (args[0] === "help" && args.length === 2 && Object.hasOwn(COMMANDS, args[1]!)) {
    return await main([args[1]!, "--help"]);
  }
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    return _printed(_usage(), name === undefined ? 2 : 0);
  }
  if (name === "--version" || name === "-V") return _printed(`fts ${VERSION}`, 0);
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    const suggestion = closestMatch(name, Object.keys(COMMANDS));
    console.error(
      `fts: unknown command "${name}"${suggestion ? `; did you mean "${suggestion}"?` : ""}` +
        ` (fts --help lists them)`,
    );
    return 2;
  }
  return await runCommand(name, await entry.load(), rest);
}

if (import.meta.main) {
  // Every fts process this one starts (50 servers for a cluster) would otherwise
  // look up Deno's release server: a DNS query off the machine each, and
  // measured 0.4 s more until 50 instances listen. This process has already
  // decided as Deno started: deno.json's tasks and the ./fts launcher set it
  // first (tests/off_machine.test.ts).
  Deno.env.set("DENO_NO_UPDATE_CHECK", "1");
  // Started by nohup: the cluster must outlive the terminal, as nohup asks.
  keepHangupIgnored();
  const notUtf8 = firstNonUtf8Argument(Deno.args);
  if (notUtf8 !== undefined) {
    console.error(
      `fts: the argument ${
        JSON.stringify(notUtf8)
      } is not UTF-8 (\uFFFD marks the bytes that are ` +
        `not), and fts cannot name such a file or directory: rename it, e.g. with convmv`,
    );
    Deno.exit(2);
  }
  Deno.exit(await main(Deno.args));
}
