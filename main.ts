/**
 * fts: a replicated multi-server file transfer toolkit. This file only picks
 * the subcommand and decides the exit code; each command lives in commands/.
 */
import { causeChain, UsageError } from "./lib/errors.ts";

export const VERSION = "0.1.0";

type Command = { run(args: string[]): Promise<number>; USAGE: string };

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
  kill: { load: () => import("./commands/kill.ts"), summary: "end one instance at once (SIGKILL)" },
  start: { load: () => import("./commands/start.ts"), summary: "bring a killed instance back" },
  ls: { load: () => import("./commands/ls.ts"), summary: "list files in the cluster" },
  status: {
    load: () => import("./commands/status.ts"),
    summary: "instances up/down and each file's replica health",
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

function _closest(word: string, options: string[]): string | undefined {
  const distance = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, i) => i);
    for (let i = 1; i <= a.length; i++) {
      let previous = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const current = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
        previous = current;
      }
    }
    return row[b.length]!;
  };
  const best = options.map((o) => ({ o, d: distance(word, o) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 2 ? best.o : undefined;
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
    const suggestion = _closest(name, Object.keys(COMMANDS));
    console.error(
      `fts: unknown command "${name}"${suggestion ? `; did you mean "${suggestion}"?` : ""}` +
        ` (fts --help lists them)`,
    );
    return 2;
  }
  const command = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`Usage: ${command.USAGE}`);
    return 0;
  }
  const verbose = rest.includes("--verbose");
  try {
    return await command.run(rest.filter((arg) => arg !== "--verbose"));
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`fts ${name}: ${error.message}`);
      return 2;
    }
    if (error instanceof DOMException && error.name === "AbortError") {
      console.error(`fts ${name}: interrupted`);
      return 130;
    }
    const [first, ...causes] = causeChain(error);
    console.error(`fts ${name}: ${first}`);
    if (verbose) {
      for (const cause of causes) console.error(`  caused by: ${cause}`);
      if (error instanceof Error && error.stack) console.error(error.stack);
    } else if (causes.length > 0) {
      console.error(`  (${causes[0]}${causes.length > 1 ? "; --verbose for more" : ""})`);
    }
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
