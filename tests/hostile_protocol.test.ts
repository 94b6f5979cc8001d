/**
 * Hostile input at a live `fts serve`: malformed, mutated and random frames,
 * connection floods and slow clients. Every frame gets an error frame or a
 * closed connection, never a hang or a crash; the instance keeps serving
 * others and its memory stays bounded.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { encodeFrame, encodeFrameHead, type Header, MAX_HEADER_BYTES } from "../lib/wire/frame.ts";
import { type DirectCluster, startDirectCluster } from "./direct_cluster.ts";
import { assertSameFile, FtsProcess, readManifestJson } from "./harness.ts";
import {
  errorCodes,
  type Outcome,
  probe,
  rawFrame,
  rawPrefix,
  residentBytes,
} from "./hostile_wire.ts";
import { newSeed, pick, randomInt, seededRandom } from "./seeded_random.ts";
import { clusterIdAt, signedPutHeader } from "./part_signer.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Fuzz cases per run: each is one connection. */
const FUZZ_CASES = 400;
const FUZZ_CONCURRENCY = 8;
/** How much an instance's resident memory may grow over the whole fuzz run. */
const RSS_GROWTH_LIMIT_BYTES = 96 * MiB;

const enc = new TextEncoder();

function _sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function _assertAnsweredOrClosed(outcome: Outcome, what: string): void {
  assert.ok(!outcome.hung, `${what}: the instance neither answered nor closed`);
  assert.ok(outcome.closed, `${what}: the connection was left open after a half-close`);
  for (const reply of outcome.replies) {
    assert.equal(typeof reply.op, "string", `${what}: a reply without an op`);
  }
}

async function _fetchOk(cluster: DirectCluster, name: string): Promise<void> {
  const dest = join(cluster.work, `dest-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dest);
  const result = await cluster.fts(["fetch", name, dest], { timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  await assertSameFile(join(dest, name), cluster.source(name));
}

/** Files under an instance's tmp directory: a write cut off must leave none behind. */
function _tempFiles(dir: string, id: number): string[] {
  try {
    return [...Deno.readDirSync(join(dir, "instances", String(id), "tmp"))].map((e) => e.name);
  } catch {
    return [];
  }
}

Deno.test("hostile: malformed frames at a live instance each get an error or a close", async () => {
  const cluster = await startDirectCluster({
    servers: 2,
    replicas: 1,
    files: { "a.bin": MiB + 5 },
    serveArgs: ["--idle-timeout", "3s", "--request-timeout", "2s"],
  });
  try {
    // The instance holding part 0 (placement decides which; with R=1 it may be either).
    const manifest = await readManifestJson(cluster.dir);
    const stored = manifest.files["a.bin"]!.parts[0]!;
    const port = Number(stored.replicas[0]);
    const digest = stored.digest;
    const body = enc.encode("these bytes hash to something else");
    const clusterId = await clusterIdAt(`127.0.0.1:${port}`);
    const put = (digest: string, size: number) => signedPutHeader(digest, size, clusterId);
    const sentinel = join(cluster.work, "escaped");
    const cases: { name: string; bytes: Uint8Array; hello?: boolean; expect: string[] }[] = [
      { name: "empty header", bytes: rawPrefix(0, 0n), expect: ["BAD_FRAME"] },
      {
        name: "header length 2^32-1",
        bytes: rawPrefix(0xffffffff, 0n),
        expect: ["HEADER_TOO_LARGE"],
      },
      {
        name: "header one byte over MAX_HEADER_BYTES",
        bytes: rawPrefix(MAX_HEADER_BYTES + 1, 0n),
        expect: ["HEADER_TOO_LARGE"],
      },
      {
        name: "body length 2^64-1",
        bytes: rawFrame('{"op":"ping"}').subarray(0, 12).map((b, i) => (i >= 4 ? 0xff : b)),
        expect: ["BODY_TOO_LARGE"],
      },
      { name: "header not JSON", bytes: rawFrame("{{{"), expect: ["BAD_FRAME"] },
      { name: "header a JSON array", bytes: rawFrame("[1,2]"), expect: ["BAD_FRAME"] },
      { name: "header a JSON string", bytes: rawFrame('"ping"'), expect: ["BAD_FRAME"] },
      { name: "header without op", bytes: rawFrame('{"digest":1}'), expect: ["BAD_FRAME"] },
      { name: "op a number", bytes: rawFrame('{"op":7}'), expect: ["BAD_FRAME"] },
      {
        name: "header invalid UTF-8",
        bytes: rawFrame(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])),
        expect: ["BAD_FRAME"],
      },
      {
        name: "first frame not a hello",
        bytes: encodeFrame({ op: "ping" }),
        hello: false,
        expect: ["VERSION_MISMATCH"],
      },
      {
        name: "hello from the future",
        bytes: encodeFrame({ op: "hello", version: 999 }),
        hello: false,
        expect: ["VERSION_MISMATCH"],
      },
      {
        name: "hello version negative",
        bytes: encodeFrame({ op: "hello", version: -1 }),
        hello: false,
        expect: ["BAD_REQUEST"],
      },
      {
        name: "hello version a string",
        bytes: encodeFrame({ op: "hello", version: "1" }),
        hello: false,
        expect: ["BAD_REQUEST"],
      },
      { name: "unknown op", bytes: encodeFrame({ op: "rm -rf" }), expect: ["UNKNOWN_OP"] },
      {
        name: "file.get name a number",
        bytes: encodeFrame({ op: "file.get", name: 5 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "file.get traversal name",
        bytes: encodeFrame({ op: "file.get", name: "../../../etc/passwd" }),
        expect: ["NOT_FOUND"],
      },
      {
        name: "file.get __proto__",
        bytes: encodeFrame({ op: "file.get", name: "__proto__" }),
        expect: ["NOT_FOUND"],
      },
      {
        name: "file.get 60KiB name",
        bytes: encodeFrame({ op: "file.get", name: "x".repeat(60 * KiB) }),
        expect: ["NOT_FOUND"],
      },
      {
        name: "part.get traversal digest",
        bytes: encodeFrame({ op: "part.get", digest: `../../${sentinel}`, offset: 0, length: 1 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get absolute path digest",
        bytes: encodeFrame({ op: "part.get", digest: "/etc/passwd", offset: 0, length: 1 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get digest with NUL",
        bytes: encodeFrame({ op: "part.get", digest: `${digest.slice(0, 63)}\0`, offset: 0 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get uppercase digest",
        bytes: encodeFrame({ op: "part.get", digest: digest.toUpperCase(), offset: 0, length: 1 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get negative offset",
        bytes: encodeFrame({ op: "part.get", digest, offset: -1, length: 1 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get fractional length",
        bytes: encodeFrame({ op: "part.get", digest, offset: 0, length: 0.5 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get length 1e300",
        bytes: encodeFrame({ op: "part.get", digest, offset: 0, length: 1e300 }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.get offset past the end",
        bytes: encodeFrame({ op: "part.get", digest, offset: stored.size + 1, length: 0 }),
        expect: ["BAD_RANGE"],
      },
      {
        name: "part.get range overflowing 2^53",
        bytes: encodeFrame({
          op: "part.get",
          digest,
          offset: Number.MAX_SAFE_INTEGER,
          length: Number.MAX_SAFE_INTEGER,
        }),
        expect: ["BAD_RANGE"],
      },
      {
        name: "part.get a part not stored here",
        bytes: encodeFrame({ op: "part.get", digest: "0".repeat(64), offset: 0, length: 1 }),
        expect: ["NOT_FOUND"],
      },
      {
        name: "part.put digest that does not match, then a ping on the same stream",
        bytes: new Uint8Array([
          ...encodeFrame(await put("1".repeat(64), body.length), body),
          ...encodeFrame({ op: "ping" }),
        ]),
        expect: ["DIGEST_MISMATCH"],
      },
      {
        name: "part.put unsigned, then a ping on the same stream",
        bytes: new Uint8Array([
          ...encodeFrame({ op: "part.put", digest: _sha256(body) }, body),
          ...encodeFrame({ op: "ping" }),
        ]),
        expect: ["UNAUTHORIZED"],
      },
      {
        name: "part.put signed for another cluster",
        bytes: encodeFrame(await signedPutHeader(_sha256(body), body.length, "other"), body),
        expect: ["UNAUTHORIZED"],
      },
      {
        name: "part.put whose signature is for another digest",
        bytes: encodeFrame(
          { ...(await put("2".repeat(64), body.length)), digest: _sha256(body) },
          body,
        ),
        expect: ["UNAUTHORIZED"],
      },
      {
        name: "part.put traversal digest",
        bytes: encodeFrame({ op: "part.put", digest: `../${sentinel}` }, body),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.put body over MAX_PART_BYTES",
        bytes: encodeFrameHead(await put(_sha256(body), 512 * MiB), 512 * MiB),
        expect: ["BODY_TOO_LARGE"],
      },
      {
        name: "part.put body cut short",
        bytes: new Uint8Array([
          ...encodeFrameHead(await put(_sha256(body), 4 * MiB), 4 * MiB),
          ...body,
        ]),
        expect: ["BAD_FRAME"],
      },
      {
        name: "ping with a body",
        bytes: encodeFrame({ op: "ping" }, body),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "part.report traversal digest",
        bytes: encodeFrame({ op: "part.report", digest: "../../manifest.json" }),
        expect: ["BAD_REQUEST"],
      },
      {
        name: "file.publish with a forged signature",
        bytes: encodeFrame(
          {
            op: "file.publish",
            cluster: "5f0c2a9e-4b1d-4c3e-9a7f-0d2e6b8c1a44",
            name: "evil.bin",
            replace: true,
            size: 1,
            partSize: 4096,
            bodyDigest: _sha256(body),
            auth: { key: "ed25519:AAAA", timestamp: Date.now(), nonce: "n", signature: "s" },
          },
          body,
        ),
        expect: ["UNAUTHORIZED"],
      },
      {
        name: "file.publish body declared 64MiB, 1MiB sent",
        bytes: new Uint8Array([
          ...encodeFrameHead({
            op: "file.publish",
            cluster: "5f0c2a9e-4b1d-4c3e-9a7f-0d2e6b8c1a44",
            name: "evil.bin",
            replace: true,
            size: 1,
            partSize: 4096,
            bodyDigest: "2".repeat(64),
            auth: { key: "ed25519:AAAA", timestamp: Date.now(), nonce: "n", signature: "s" },
          }, 64 * MiB),
          ...new Uint8Array(MiB),
        ]),
        expect: ["BAD_FRAME", "BODY_TOO_LARGE"],
      },
    ];
    const generation = manifest.generation;
    for (const c of cases) {
      const outcome = await probe(port, c.bytes, { hello: c.hello ?? true });
      _assertAnsweredOrClosed(outcome, c.name);
      const codes = errorCodes(outcome);
      assert.ok(
        codes.length > 0 && c.expect.includes(codes[0]!),
        `${c.name}: expected ${c.expect.join(" or ")}, got ${JSON.stringify(outcome.replies)}`,
      );
    }
    // The stream survived the request-level error: the ping after the bad part.put was answered.
    const mismatch = await probe(
      port,
      cases.find((c) => c.name.startsWith("part.put digest"))!.bytes,
    );
    assert.deepEqual(mismatch.replies.map((h) => h.op), ["hello", "error", "pong"]);

    await assert.rejects(Deno.lstat(sentinel), Deno.errors.NotFound);
    assert.deepEqual(_tempFiles(cluster.dir, port), [], "a refused part.put left a temp file");
    assert.equal((await readManifestJson(cluster.dir)).generation, generation);
    await _fetchOk(cluster, "a.bin");
  } finally {
    await cluster.stop();
  }
});

/** Valid frames the fuzzer starts from. */
function _seedFrames(
  digest: string,
  partSize: number,
  put: { body: Uint8Array; header: Header },
): Uint8Array[] {
  return [
    encodeFrame({ op: "ping" }),
    encodeFrame({ op: "file.get", name: "a.bin" }),
    encodeFrame({ op: "file.list" }),
    encodeFrame({ op: "stats" }),
    encodeFrame({ op: "part.get", digest, offset: 0, length: Math.min(partSize, 4096) }),
    encodeFrame({ op: "part.get", digest, offset: partSize - 10, length: 10 }),
    encodeFrame({ op: "part.has", digest }),
    encodeFrame({ op: "part.verify", digest }),
    encodeFrame(put.header, put.body),
    encodeFrame({ op: "cluster.info" }),
    encodeFrame({
      op: "file.rename",
      cluster: "5f0c2a9e-4b1d-4c3e-9a7f-0d2e6b8c1a44",
      name: "a.bin",
      contentId: digest,
      to: "b.bin",
      auth: { key: "ed25519:x", timestamp: 1, nonce: "n", signature: "s" },
    }),
  ];
}

const _WEIRD_VALUES: unknown[] = [
  -1,
  -0,
  1e308,
  2 ** 53,
  0.5,
  "",
  "../../x",
  "\u0000",
  null,
  [],
  {},
  true,
  "x".repeat(5000),
];

/** One mutated frame sequence from the seed frames. */
function _mutate(random: () => number, seeds: Uint8Array[]): Uint8Array {
  const frame = pick(random, seeds).slice();
  switch (randomInt(random, 0, 6)) {
    case 0: { // flip bytes anywhere
      for (let i = randomInt(random, 1, 4); i > 0; i--) {
        const at = randomInt(random, 0, frame.length - 1);
        frame[at] = frame[at]! ^ (1 << randomInt(random, 0, 7));
      }
      return frame;
    }
    case 1: // truncate
      return frame.subarray(0, randomInt(random, 0, frame.length - 1));
    case 2: { // lie about the header length
      new DataView(frame.buffer).setUint32(0, randomInt(random, 0, 2 ** 32 - 1));
      return frame;
    }
    case 3: { // lie about the body length
      const view = new DataView(frame.buffer);
      view.setUint32(4, random() < 0.5 ? 0 : randomInt(random, 0, 2 ** 32 - 1));
      view.setUint32(8, randomInt(random, 0, 2 ** 32 - 1));
      return frame;
    }
    case 4: { // a field of the wrong type or out of range
      const view = new DataView(frame.buffer);
      const headerLength = view.getUint32(0);
      const header = JSON.parse(new TextDecoder().decode(frame.subarray(12, 12 + headerLength)));
      const keys = Object.keys(header);
      header[pick(random, keys)] = pick(random, _WEIRD_VALUES);
      return encodeFrame(header as Header, frame.subarray(12 + headerLength));
    }
    case 5: // random bytes
      return crypto.getRandomValues(new Uint8Array(randomInt(random, 1, 300)));
    default: // two frames back to back, the second truncated
      return new Uint8Array([
        ...frame,
        ...pick(random, seeds).subarray(0, randomInt(random, 1, 40)),
      ]);
  }
}

Deno.test("hostile: seeded fuzzing of a live instance; it keeps serving, memory bounded", async () => {
  const seed = Number(Deno.env.get("FTS_FUZZ_SEED") ?? newSeed());
  const cluster = await startDirectCluster({
    servers: 2,
    replicas: 2,
    files: { "a.bin": 2 * MiB + 3 },
    serveArgs: ["--idle-timeout", "3s", "--request-timeout", "2s"],
  });
  try {
    const port = cluster.ports[0]!;
    const pid = cluster.instances[0]!.pid;
    const entry = (await readManifestJson(cluster.dir)).files["a.bin"]!;
    const fuzzBody = enc.encode("fuzz body");
    const seeds = _seedFrames(entry.parts[0]!.digest, entry.parts[0]!.size, {
      body: fuzzBody,
      header: await signedPutHeader(
        _sha256(fuzzBody),
        fuzzBody.length,
        await clusterIdAt(`127.0.0.1:${port}`),
      ),
    });
    await _fetchOk(cluster, "a.bin");
    const rssBefore = await residentBytes(pid);

    // A normal client runs the whole time, slowed so that it overlaps the fuzzing.
    const dest = join(cluster.work, "during");
    await Deno.mkdir(dest);
    const during = new FtsProcess([
      "fetch",
      "a.bin",
      dest,
      "--limit-rate",
      "512KiB",
      "--data",
      cluster.dir,
    ]);

    const random = seededRandom(seed);
    const inputs = Array.from({ length: FUZZ_CASES }, () => ({
      bytes: _mutate(random, seeds),
      hello: random() < 0.85,
    }));
    let next = 0;
    const failures: string[] = [];
    await Promise.all(Array.from({ length: FUZZ_CONCURRENCY }, async () => {
      while (next < inputs.length) {
        const index = next++;
        const input = inputs[index]!;
        const outcome = await probe(port, input.bytes, { hello: input.hello, deadlineMs: 15_000 });
        if (outcome.hung || !outcome.closed) {
          failures.push(`case ${index}: ${outcome.hung ? "hung" : "left open"}`);
        }
      }
    }));
    assert.deepEqual(failures, [], `seed ${seed}: ${failures.slice(0, 5).join("; ")}`);

    const result = await during.result();
    assert.equal(result.code, 0, `seed ${seed}: ${result.stderr}`);
    await assertSameFile(join(dest, "a.bin"), cluster.source("a.bin"));
    // Still serving, still itself.
    const peer = await Peer.connect(`127.0.0.1:${port}`);
    try {
      await peer.ping();
    } finally {
      peer.close();
    }
    await _fetchOk(cluster, "a.bin");
    const rssAfter = await residentBytes(pid);
    assert.ok(
      rssAfter - rssBefore < RSS_GROWTH_LIMIT_BYTES,
      `seed ${seed}: resident memory grew from ${rssBefore} to ${rssAfter} bytes`,
    );
    assert.deepEqual(_tempFiles(cluster.dir, port), [], `seed ${seed}: temp files left`);
    console.log(
      `fuzz seed ${seed}: ${FUZZ_CASES} cases, RSS ${(rssBefore / MiB).toFixed(0)} -> ${
        (rssAfter / MiB).toFixed(0)
      } MiB`,
    );
  } catch (error) {
    console.error(`hostile fuzzing failed with seed ${seed} (FTS_FUZZ_SEED=${seed} replays it)`);
    throw error;
  } finally {
    await cluster.stop();
  }
});

Deno.test("hostile: connection flood and slow clients are limited and timed out; others served", async () => {
  const maxConnections = 12;
  const cluster = await startDirectCluster({
    servers: 3,
    replicas: 2,
    files: { "a.bin": MiB + 77 },
    serveArgs: [
      "--max-connections",
      String(maxConnections),
      "--idle-timeout",
      "2s",
      "--request-timeout",
      "1s",
    ],
  });
  const conns: Deno.TcpConn[] = [];
  try {
    const port = cluster.ports[0]!;
    // Flood: far more idle connections than the limit.
    for (let i = 0; i < maxConnections * 3; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    const firstEvents = conns.map((conn) => _firstEvent(conn));
    // Those over the limit are told BUSY and closed at once.
    const refused = await Promise.all(firstEvents.map((event) => _within(event, 1_000)));
    const busy = refused.filter((event) => event === "BUSY").length;
    assert.ok(busy >= maxConnections * 2 - 2, `only ${busy} connections were refused BUSY`);
    // While the instance is full, a new client is refused (BUSY, or reset when
    // its hello crosses the close).
    await assert.rejects(Peer.connect(`127.0.0.1:${port}`), /Too many connections|reset|pipe/i);
    // And fetch still completes from the other replicas.
    await _fetchOk(cluster, "a.bin");

    // The idle ones are closed by the idle timeout, freeing their slots.
    const idled = await Promise.all(firstEvents.map((event) => _within(event, 15_000)));
    assert.ok(idled.every((event) => event !== "silent"), `still open: ${idled.join(",")}`);
    const peer = await Peer.connect(`127.0.0.1:${port}`);
    await peer.ping();
    peer.close();

    // Slow clients: a hello one byte at a time, a byte every 250 ms, would take
    // minutes; the instance hangs up long before that.
    const hello = encodeFrame({ op: "hello", version: 1, agent: "s".repeat(400) });
    const slow = await Promise.all(
      Array.from({ length: 6 }, () => _dribble(port, hello, 250)),
    );
    for (const sent of slow) {
      assert.ok(sent < hello.length, `a slow client sent all ${sent} bytes without being cut off`);
    }
    // A slow body: part.put whose body stops flowing is cut by the request timeout.
    const body = new Uint8Array(64 * KiB);
    const stalled = await probe(
      port,
      new Uint8Array([
        ...encodeFrameHead(
          await signedPutHeader(_sha256(body), body.length, await clusterIdAt(`127.0.0.1:${port}`)),
          body.length,
        ),
      ]),
      { halfClose: false, deadlineMs: 15_000 },
    );
    assert.ok(!stalled.hung && stalled.closed, JSON.stringify(stalled));
    assert.deepEqual(errorCodes(stalled), ["TIMEOUT"]);
    assert.deepEqual(_tempFiles(cluster.dir, port), []);
    await _fetchOk(cluster, "a.bin");
    // Normal clients were never starved: stats say nothing got stuck (the asking
    // connection is the only one left, once the instance has seen the fetch's close).
    let active = -1;
    for (const deadline = Date.now() + 15_000; active !== 1 && Date.now() < deadline;) {
      const stats = await Peer.connect(`127.0.0.1:${port}`);
      active = Number((await stats.stats()).activeConnections);
      stats.close();
      if (active !== 1) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(active, 1, "connections stuck open on the instance");
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed by the server */ }
    }
    await cluster.stop();
  }
});

/** What a client that sends nothing hears first: an error code, or "closed". */
async function _firstEvent(conn: Deno.TcpConn): Promise<string> {
  const buffer = new Uint8Array(4096);
  try {
    const n = await conn.read(buffer);
    if (n === null) return "closed";
    const text = new TextDecoder().decode(buffer.subarray(12, n));
    return /"code":"(\w+)"/.exec(text)?.[1] ?? "data";
  } catch {
    return "closed";
  }
}

/** The promise's value, or "silent" when it has not settled within `waitMs`. */
async function _within(promise: Promise<string>, waitMs: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("silent"), waitMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends `bytes` one at a time, `gapMs` apart; returns how many went out before the server hung up. */
async function _dribble(port: number, bytes: Uint8Array, gapMs: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let closed = false;
  const reading = (async () => {
    const buffer = new Uint8Array(4096);
    try {
      while ((await conn.read(buffer)) !== null) { /* an error frame, then the close */ }
    } catch { /* reset */ }
    closed = true;
  })();
  let sent = 0;
  try {
    while (sent < bytes.length && !closed) {
      await conn.write(bytes.subarray(sent, sent + 1));
      sent++;
      await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  } catch {
    // Broken pipe: the server hung up.
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
    await reading;
  }
  return sent;
}
