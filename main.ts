/**
 * fts: a replicated multi-server file transfer toolkit. This file only picks
 * the subcommand and decides the exit code; each command lives in commands/.
 */
import { closestMatch } from "./lib/base/closest_match.ts";
import { printable } from "./lib/base/printable.ts";
import { causeChain, UsageError } from "./lib/wire/errors.ts";
import { errorLine } from "./lib/ui/hints.ts";

export const VERSION = "0.1.0";

/** A command module: USAGE and EXAMPLE (one or more lines) are what `fts COMMAND --help` shows. */
type Command = { run(args: string[]): Promise<number>; USAGE: string; EXAMPLE?: string };

const COMMANDS: Record<string, { load: () => Promise<Command>; summary: string }> = {
  serve: { load: () => import("./commands/serve.ts"), summary: "run one server instance" },
  preload: {
    load: () => import("./commands/preload.ts"),
    summary: "split files into parts and store them on the instances",
  },
  cluster: {
    load: () => import("./commands/cluster.ts"),
    summary: "start every instance and supervise them",
  },
  fetch: {
    load: () => import("./commands/fetch.ts"),
    summary: "download a file by name (resumes, fails over, verifies)",
  },
  gateway: {
    load: () => import("./commands/gateway.ts"),
    summary: "serve the files over HTTP: curl, wget, browsers, aria2c (Metalink)",
  },
  kill: { load: () => import("./commands/kill.ts"), summary: "end one instance at once (SIGKILL)" },
  start: { load: () => import("./commands/start.ts"), summary: "bring a killed instance back" },
  ls: { load: () => import("./commands/ls.ts"), summary: "list files in the cluster" },
  status: {
    load: () => import("./commands/status.ts"),
    summary: "instances up/down and each file's replica health",
  },
  // --- signed changes: upload, delete, rename by their owners ---
  upload: {
    load: () => import("./commands/upload.ts"),
    summary: "send a file into the running cluster, signed as you",
  },
  rm: { load: () => import("./commands/rm.ts"), summary: "delete a file you own" },
  mv: { load: () => import("./commands/mv.ts"), summary: "rename a file you own" },
  whoami: { load: () => import("./commands/whoami.ts"), summary: "print your identity (key)" },
  certs: {
    load: () => import("./commands/certs.ts"),
    summary: "make a cluster CA and a TLS certificate per host",
  },
  migrate: {
    load: () => import("./commands/migrate.ts"),
    summary: "move a one-host cluster's manifest into etcd (parts stay put)",
  },
  demo: {
    load: () => import("./commands/demo.ts"),
    summary: "see it work: a cluster, clients, kills, a resume (about 15 s; cleans up)",
  },
  repair: {
    load: () => import("./commands/repair.ts"),
    summary: "copy under-replicated parts back to R copies, drop surplus ones",
  },
  scrub: {
    load: () => import("./commands/scrub.ts"),
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
    "Every command takes --data DIR (default ./fts-data, or $FTS_DATA).",
    "Example: fts preload movie.mkv && fts cluster   then   fts fetch movie.mkv ~/Downloads",
  ].join("\n");
}

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(_usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`fts ${VERSION}`);
    return 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    const suggestion = closestMatch(name, Object.keys(COMMANDS));
    console.error(
      `fts: unknown command "${name}"${suggestion ? `; did you mean "${suggestion}"?` : ""}` +
        ` (fts --help lists them)`,
    );
    return 2;
  }
  const command = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`Usage: ${command.USAGE}`);
    if (command.EXAMPLE) {
      console.log(
        `\n${command.EXAMPLE.includes("\n") ? "Examples" : "Example"}:\n${
          command.EXAMPLE.split("\n").map((l) => `  ${l}`).join("\n")
        }`,
      );
    }
    console.log("\n--data DIR picks the data directory; --verbose shows the cause of an error.");
    return 0;
  }
  const verbose = rest.includes("--verbose");
  try {
    return await command.run(rest.filter((arg) => arg !== "--verbose"));
  } catch (error) {
    // Scripts that asked for --json get the error as JSON on stdout too.
    const json = rest.includes("--json");
    if (error instanceof UsageError) {
      console.error(`fts ${name}: ${printable(error.message)}`);
      if (json) console.log(JSON.stringify({ ok: false, error: error.message, exitCode: 2 }));
      return 2;
    }
    if (error instanceof DOMException && error.name === "AbortError") {
      console.error(`fts ${name}: interrupted`);
      if (json) console.log(JSON.stringify({ ok: false, error: "interrupted", exitCode: 130 }));
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
    if (json) console.log(JSON.stringify({ ok: false, error: line, causes, exitCode: 1 }));
    return 1;
  }
}

if (import.meta.main) {
  // Every fts process this one starts (50 servers for a cluster) would otherwise
  // look up Deno's release server: a DNS query off the machine each, and
  // measured 0.4 s more until 50 instances listen.
  Deno.env.set("DENO_NO_UPDATE_CHECK", "1");
  Deno.exit(await main(Deno.args));
}
