/**
 * `fts ls` prints the file list as its pages arrive: a reader that stops
 * early stops the walk, a server that breaks off part way is followed by the
 * next from where it stopped, and a server whose pages never move on is an
 * error, not a loop. Against lying servers that serve pages of made-up names.
 */
import assert from "node:assert/strict";
import { DENO, MAIN, runFts, tempDir } from "./harness.ts";
import { type LyingAnswer, startLyingServer } from "./lying_server.ts";
import { jsonBody } from "../lib/wire/frame.ts";
import { MAX_LIST_PAGE_FILES } from "../lib/wire/ops_files.ts";
import { join } from "../lib/base/paths.ts";

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

Deno.test("ls: a reader that stops after one line stops the walk; --json is the whole array", async () => {
  const work = await tempDir("fts-ls-stream-");
  const total = 50 * MAX_LIST_PAGE_FILES;
  const server = startLyingServer(_pages(total));
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
  }
});
