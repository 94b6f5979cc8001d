/**
 * Instances start from one bundled script (lib/ops/instance_bundle.ts), built
 * once into the user's cache directory; when it cannot be built they start
 * from main.ts, and the cluster says so once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { INSTANCE_BUNDLE_PREFIX } from "../lib/ops/instance_bundle.ts";
import { freePortRange, FtsProcess, runFts, tempDir, writeRandomFile } from "./harness.ts";

const SERVERS = 3;

async function _commandLines(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const entry of Deno.readDir(join(dir, "run"))) {
    if (!entry.name.endsWith(".pid")) continue;
    const pid = (await Deno.readTextFile(join(dir, "run", entry.name))).trim();
    lines.push((await Deno.readTextFile(`/proc/${pid}/cmdline`)).replaceAll("\0", " "));
  }
  return lines;
}

async function _withCluster(
  cacheHome: string,
  fn: (
    ctx: { dir: string; basePort: number; supervisor: FtsProcess; env: Record<string, string> },
  ) => Promise<void>,
): Promise<void> {
  const work = await tempDir();
  const dir = join(work, "data");
  const env = { XDG_CACHE_HOME: cacheHome };
  const source = join(work, "a.bin");
  await writeRandomFile(source, 300_000, 7);
  const basePort = freePortRange(SERVERS);
  const setup = ["--data", dir, "--servers", String(SERVERS), "--base-port", String(basePort)];
  const preload = await runFts(["preload", source, ...setup, "--replicas", "2"], { env });
  assert.equal(preload.code, 0, preload.stderr);
  const supervisor = new FtsProcess(["cluster", ...setup], { env });
  try {
    await supervisor.waitFor(/fts cluster: ready/, 60_000);
    await fn({ dir, basePort, supervisor, env });
    const fetched = await runFts(["fetch", "a.bin", work, "--data", dir]);
    assert.equal(fetched.code, 0, fetched.stderr);
  } finally {
    supervisor.kill("SIGTERM");
    await supervisor.status;
    await Deno.remove(work, { recursive: true });
  }
}

Deno.test({
  name: "instance bundle: cluster and fts start run instances from one cached script",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const cacheHome = await tempDir();
    try {
      await _withCluster(cacheHome, async ({ dir, basePort, env }) => {
        const cached = [...Deno.readDirSync(join(cacheHome, "fts"))].map((e) => e.name);
        assert.equal(cached.length, 1, cached.join(", "));
        assert.match(cached[0]!, new RegExp(`^${INSTANCE_BUNDLE_PREFIX}[0-9a-f]{16}\\.js$`));
        const bundle = join(cacheHome, "fts", cached[0]!);
        for (const line of await _commandLines(dir)) assert.ok(line.includes(bundle), line);
        // `fts kill` and `fts start` recognise such an instance as theirs.
        const port = String(basePort);
        const kill = await runFts(["kill", port, "--data", dir], { env });
        assert.equal(kill.code, 0, kill.stderr);
        const start = await runFts(["start", port, "--data", dir], { env });
        assert.equal(start.code, 0, start.stderr);
        const restarted = await _commandLines(dir);
        assert.equal(restarted.length, SERVERS);
        for (const line of restarted) assert.ok(line.includes(bundle), line);
        // Asked with --help, the bundled script answers as `fts serve` does.
        const help = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--quiet", bundle, "serve", "--help"],
          stdout: "piped",
        }).output();
        assert.match(new TextDecoder().decode(help.stdout), /^Usage: fts serve --port P/);
      });
    } finally {
      await Deno.remove(cacheHome, { recursive: true });
    }
  },
});

Deno.test({
  name: "instance bundle: with no writable cache, instances start from main.ts and it is said",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const work = await tempDir();
    // A cache "directory" below a regular file: mkdir fails.
    const blocked = join(work, "file");
    await Deno.writeTextFile(blocked, "");
    try {
      await _withCluster(join(blocked, "cache"), async ({ dir, supervisor }) => {
        assert.match(supervisor.stderr, /instances start from main\.ts, more slowly: no bundle/);
        assert.equal(supervisor.stderr.match(/no bundle/g)?.length, 1);
        for (const line of await _commandLines(dir)) assert.match(line, /main\.ts serve/);
      });
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
