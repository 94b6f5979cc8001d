/**
 * A cluster started the way README says sends nothing off the machine. Any
 * long-lived `deno run` process looks up Deno's release server about a second
 * after it starts (a DNS query to the host's resolver) unless
 * DENO_NO_UPDATE_CHECK is set before Deno starts: main.ts sets it for the
 * processes it starts, and deno.json's tasks and the `./fts` launcher for the
 * first one. Observed with strace, from an environment without the variable.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DENO, freePortRange, straceUnusable, tempDir } from "./harness.ts";
import { DrainedProcess } from "../bench/drained_process.ts";

const PROJECT = new URL("..", import.meta.url).pathname;
/** Longer than the ~0.8 s after which an unset variable showed the look-up. */
const WATCH_AFTER_READY_MS = 3_000;

/** Connections and datagrams in an strace log that leave 127.0.0.0/8 (or go to a resolver). */
function _offMachine(log: string): string[] {
  return log.split("\n").filter((line) =>
    /\b(connect|sendto|sendmmsg|sendmsg)\(/.test(line) &&
    (/htons\(53\)/.test(line) ||
      /sin6?_addr=inet_(addr|pton)\((AF_INET6, )?"(?!127\.|::1")/.test(line))
  );
}

/** This process's environment without the variable, and without FTS_* settings. */
function _envWithoutIt(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const [key, value] of Object.entries(Deno.env.toObject())) {
    if (key !== "DENO_NO_UPDATE_CHECK" && !key.startsWith("FTS_")) env[key] = value;
  }
  return env;
}

for (
  const [how, program, args] of [
    ["deno task cluster", DENO, ["task", "cluster"]],
    ["./fts cluster", join(PROJECT, "fts"), ["cluster"]],
  ] as const
) {
  Deno.test({
    name: `${how} sends nothing off the machine (no look-up of Deno's release server)`,
    ignore: await straceUnusable(),
    async fn() {
      const dir = await tempDir();
      const log = join(dir, "strace.log");
      const port = freePortRange(2);
      const data = join(dir, "data");
      const traced = new DrainedProcess(
        new Deno.Command("strace", {
          args: [
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmmsg,sendmsg",
            "-o",
            log,
            program,
            ...args,
            "--servers",
            "2",
            "--replicas",
            "1",
            "--base-port",
            String(port),
            "--data",
            data,
            "--plain",
          ],
          cwd: PROJECT,
          env: _envWithoutIt(),
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
      try {
        await traced.waitFor(/ready: 2 instances listening/);
        await new Promise((resolve) => setTimeout(resolve, WATCH_AFTER_READY_MS));
        const { pid } = JSON.parse(await Deno.readTextFile(join(data, "run", "cluster.json")));
        Deno.kill(pid, "SIGTERM");
        assert.equal((await traced.status).code, 0, traced.stderr);
        const sent = _offMachine(await Deno.readTextFile(log));
        assert.deepEqual(sent, [], sent.join("\n"));
      } finally {
        traced.kill("SIGKILL");
        await traced.status;
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
