/**
 * fts: a replicated multi-server file transfer toolkit. This file only picks
 * the subcommand and decides the exit code; each command lives in commands/.
 */
import { closestMatch } from "./lib/base/closest_match.ts";
import { type Command, runCommand } from "./lib/ui/run_command.ts";

export const VERSION = "0.1.0";

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
  writers: {
    load: () => import("./commands/writers.ts"),
    summary: "who may store parts on the cluster, and how much (operator)",
  },
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
  return await runCommand(name, await entry.load(), rest);
}

if (import.meta.main) {
  // Every fts process this one starts (50 servers for a cluster) would otherwise
  // look up Deno's release server: a DNS query off the machine each, and
  // measured 0.4 s more until 50 instances listen.
  Deno.env.set("DENO_NO_UPDATE_CHECK", "1");
  Deno.exit(await main(Deno.args));
}
