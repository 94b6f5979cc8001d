/**
 * `fts ls` prints the file list as its pages arrive: a reader that stops
 * early stops the walk, a server that breaks off part way is followed by the
 * next from where it stopped, and a server whose pages never move on is an
 * error, not a loop: against lying servers that serve pages of made-up
 * names. A local cluster's listing comes from its instances, or its store.
 */
import assert from "node:assert/strict";
import { DENO, instanceStats, MAIN, runFts, startCluster, tempDir } from "./harness.ts";
import { type LyingAnswer, startLyingServer } from "./lying_server.ts";
import { jsonBody } from "../lib/wire/frame.ts";
import { MAX_LIST_PAGE_FILES } from "../lib/wire/ops_files.ts";
import { join } from "../lib/base/paths.ts";
import { missingTool } from "./missing_tool.ts";
import { TmuxTerminal } from "./tmux.ts";

const GENERATION = 7;

function _name(i: number): string {
  return `file-${String(i).padStart(6, "0")}.bin`;
}

function _summary(i: number) {
  return { name: _name(i), size: 1000 + i, parts: 1, owner: "operator", created: "" };
}

/** Answers file.list with pages of names 0..total-1 in order, as an instance would. */
function _pages(total: number): LyingAnswer {
  return (request) => {
    if (request.op !== "file.list") return undefined;
    const after = typeof request.after === "string" ? request.after : undefined;
    const start = after === undefined ? 0 : Number(/\d+/.exec(after)![0]) + 1;
    const limit = Math.min(Number(request.limit ?? MAX_LIST_PAGE_FILES), MAX_LIST_PAGE_FILES);
    const end = Math.min(total, start + limit);
    const page = Array.from({ length: end - start }, (_, k) => _summary(start + k));
    return {
      header: { op: "files", generation: GENERATION, more: end < total },
      body: jsonBody(page),
    };
  };
}

function _flags(work: string, ...servers: string[]): string[] {
  return [...servers.flatMap((s) => ["--server", s]), "--data", join(work, "nodata")];
}

Deno.test("ls: the first page is printed before the second comes; a reader that stops ends the walk; --json is the whole array", async () => {
  const work = await tempDir("fts-ls-stream-");
  const total = 50 * MAX_LIST_PAGE_FILES;
  const pages = _pages(total);
  // The second page is held back until the test has read the first line.
  const { promise: firstLineRead, resolve: releaseSecondPage } = Promise.withResolvers<void>();
  let asked = 0;
  const server = startLyingServer(async (request) => {
    if (request.op === "file.list" && ++asked === 2) await firstLineRead;
    return pages(request);
  });
  try {
    const child = new Deno.Command(DENO, {
      args: ["run", "-A", "--quiet", MAIN, "ls", ..._flags(work, server.address)],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    let seen = "";
    while (!seen.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    releaseSecondPage();
    await reader.cancel();
    const status = await child.status;
    await child.stderr.cancel();
    assert.match(seen, /^NAME\s+SIZE\s+PARTS\s+OWNER\n/);
    assert.equal(status.code, 0);
    // The first line came before the last page was asked for, and the walk ended there.
    assert.ok(
      server.requests.length < total / MAX_LIST_PAGE_FILES,
      `pages asked: ${server.requests.length}`,
    );

    const small = 2 * MAX_LIST_PAGE_FILES + 17;
    const smallServer = startLyingServer(_pages(small));
    try {
      const json = await runFts(["ls", "--json", ..._flags(work, smallServer.address)]);
      assert.equal(json.code, 0, json.stderr);
      const expected = Array.from({ length: small }, (_, i) => _summary(i));
      assert.equal(json.stdout, JSON.stringify(expected, null, 2) + "\n");
    } finally {
      await smallServer.stop();
    }
  } finally {
    await server.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("ls: a server that breaks off mid-list is followed by the next, from where it stopped", async () => {
  const work = await tempDir("fts-ls-stream-");
  const total = 3 * MAX_LIST_PAGE_FILES + 5;
  const whole = _pages(total);
  let answered = 0;
  // The first server sends two pages, then a frame that is not one.
  const breaking = startLyingServer((request) => {
    if (request.op === "file.list" && ++answered > 2) return { raw: new Uint8Array(64).fill(0x7b) };
    return whole(request);
  });
  const next = startLyingServer(whole);
  try {
    const listed = await runFts(["ls", ..._flags(work, breaking.address, next.address)]);
    assert.equal(listed.code, 0, listed.stderr);
    const names = listed.stdout.trim().split("\n").slice(1).map((line) => line.split(/\s+/)[0]);
    assert.deepEqual(names, Array.from({ length: total }, (_, i) => _name(i)));
    // The second server was asked to go on after the last name given, at the same generation.
    const first = next.requests.find((r) => r.op === "file.list")!;
    assert.equal(first.after, _name(2 * MAX_LIST_PAGE_FILES - 1));
    assert.equal(first.generation, GENERATION);
  } finally {
    await breaking.stop();
    await next.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("ls: a server whose pages never move on is an error, not an endless walk", async () => {
  const work = await tempDir("fts-ls-stream-");
  const stuck = startLyingServer((request) =>
    request.op === "file.list"
      ? {
        header: { op: "files", generation: GENERATION, more: true },
        body: jsonBody([_summary(0), _summary(1)]),
      }
      : undefined
  );
  try {
    const listed = await runFts(["ls", ..._flags(work, stuck.address)]);
    assert.equal(listed.code, 1, listed.stdout);
    assert.match(listed.stderr, /does not go past "file-000001\.bin"/);
    assert.ok(stuck.requests.length <= 3, `pages asked: ${stuck.requests.length}`);
  } finally {
    await stuck.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("ls: a local cluster's listing comes from a running instance, and from the store when none answers", async () => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    files: { "b.bin": 1000, "A.bin": 2000, "c.bin": 10 },
  });
  const requests = async () => {
    let sum = 0;
    for (const port of cluster.ports) sum += (await instanceStats(`127.0.0.1:${port}`)).requests!;
    return sum;
  };
  const names = async () => {
    const listed = await cluster.fts(["ls", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    return (JSON.parse(listed.stdout) as { name: string }[]).map((f) => f.name);
  };
  const pids = await Promise.all(
    cluster.ports.map(async (port) =>
      Number(await Deno.readTextFile(join(cluster.dir, "run", `${port}.pid`)))
    ),
  );
  try {
    const before = await requests();
    const counted = await requests() - before; // what counting alone adds
    const idle = await requests();
    // Sorted by character code, as the store and the instances keep them.
    assert.deepEqual(await names(), ["A.bin", "b.bin", "c.bin"]);
    assert.ok(await requests() - idle > counted, "no instance was asked for the list");

    // Every instance hung: each one asked stalls, then the store answers.
    for (const pid of pids) Deno.kill(pid, "SIGSTOP");
    try {
      assert.deepEqual(await names(), ["A.bin", "b.bin", "c.bin"]);
    } finally {
      for (const pid of pids) Deno.kill(pid, "SIGCONT");
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("ls: with --server, a broken config in the data directory is not read", async () => {
  const work = await tempDir("fts-ls-stream-");
  const server = startLyingServer(_pages(3));
  try {
    const data = join(work, "data");
    await Deno.mkdir(data);
    await Deno.writeTextFile(join(data, "config.json"), "{not json");
    const listed = await runFts(["ls", "--server", server.address, "--data", data]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /file-000002\.bin/);
  } finally {
    await server.stop();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test({
  name: "ls: on a terminal, one long name overflows its own row only; the others fit the width",
  ignore: missingTool("tmux"),
  async fn() {
    const long = `${"n".repeat(200)}.bin`;
    const server = startLyingServer((request) =>
      request.op === "file.list"
        ? {
          header: { op: "files", generation: GENERATION, more: false },
          body: jsonBody([_summary(1), { ..._summary(2), name: long }, _summary(3)]),
        }
        : undefined
    );
    const terminal = new TmuxTerminal();
    try {
      await terminal.start(["ls", "--server", server.address], { columns: 80, rows: 20 });
      const screen = await terminal.waitFor(/\[exit 0\]/);
      const lines = screen.split("\n");
      // A row that fits is one line of the screen, with its size, parts and owner.
      for (const i of [1, 3]) {
        assert.ok(
          lines.some((line) =>
            new RegExp(`^${_name(i)} +100\\d B +1 +operator$`).test(line.trim())
          ),
          screen,
        );
      }
      assert.ok(lines.some((line) => /^NAME +SIZE +PARTS +OWNER$/.test(line.trim())), screen);
      // Not a pipe: piped, the long name sets every row's width, as before.
      const piped = await runFts(["ls", "--server", server.address]);
      assert.equal(piped.code, 0, piped.stderr);
      assert.ok(piped.stdout.split("\n")[0]!.length > 200, piped.stdout);
    } finally {
      await terminal.close();
      await server.stop();
    }
  },
});
