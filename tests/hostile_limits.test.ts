/**
 * The limits a shared cluster needs, tried as a greedy or hostile client
 * would on real instances: one client address cannot take every connection
 * slot, an instance full of connections shows as busy, not down, and a
 * flood of part.verify, or of signed part.has and part.put of stored parts,
 * cannot make an instance hash faster than its bound,
 * and a lying server cannot make fetch allocate or leave behind what it likes.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { startDirectCluster } from "./direct_cluster.ts";
import { assertSameFile, readManifestJson, runFts, tempDir } from "./harness.ts";
import { HELLO, rawPrefix } from "./hostile_wire.ts";
import { startLyingServer } from "./lying_server.ts";
import { partSigner } from "./part_signer.ts";
import { jsonBody } from "../lib/wire/frame.ts";

/** What became of a connection: refused with BUSY, or still open and served. */
type Fate = "BUSY" | "open" | "closed";

/**
 * Opens `count` connections to `port` from the source address `from` (any
 * 127.0.0.0/8 address: loopback accepts them all), each sending a hello, and
 * tells after `settleMs` what became of each. Deno.connect cannot pick a
 * source address; node:net's localAddress can.
 */
async function _flood(
  from: string,
  port: number,
  count: number,
  settleMs = 1_500,
): Promise<{ fates: Fate[]; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const fates: Fate[] = Array(count).fill("open");
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
    let heard = "";
    socket.on("connect", () => socket.write(HELLO));
    socket.on("data", (chunk: Uint8Array) => {
      heard += new TextDecoder().decode(chunk);
      if (heard.includes('"BUSY"')) fates[i] = "BUSY";
    });
    socket.on("close", () => {
      if (fates[i] === "open") fates[i] = "closed";
    });
    socket.on("error", () => {});
    sockets.push(socket);
  }
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  return { fates, sockets };
}

Deno.test("limits: one address flooding 12 connections at --max-connections 8 gets 4; others are served; a full instance shows busy", async () => {
  const cluster = await startDirectCluster({
    servers: 2,
    replicas: 2,
    files: { "a.bin": 300_000 },
    serveArgs: ["--max-connections", "8"],
  });
  const sockets: net.Socket[] = [];
  try {
    const port = cluster.ports[0]!;
    const greedy = await _flood("127.0.0.2", port, 12);
    sockets.push(...greedy.sockets);
    const count = (fate: Fate) => greedy.fates.filter((f) => f === fate).length;
    // Half of the slots for one address: 4 served, 8 told BUSY.
    assert.equal(count("open"), 4, greedy.fates.join(","));
    assert.equal(count("BUSY"), 8, greedy.fates.join(","));
    // Another client still gets in, and a fetch from this instance works.
    const peer = await Peer.connect(`127.0.0.1:${port}`);
    await peer.ping();
    peer.close();
    const dest = join(cluster.work, "dest");
    await Deno.mkdir(dest);
    const fetched = await cluster.fts(["fetch", "a.bin", dest, "--server", `127.0.0.1:${port}`]);
    assert.equal(fetched.code, 0, fetched.stderr);
    await assertSameFile(join(dest, "a.bin"), cluster.source("a.bin"));
    // Two greedy addresses together fill it: status calls it busy, not down.
    const second = await _flood("127.0.0.3", port, 4);
    sockets.push(...second.sockets);
    assert.deepEqual(second.fates, ["open", "open", "open", "open"]);
    const status = await cluster.fts(["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /instances: 2\/2 up; busy \(every connection taken\): (\d+)/);
    assert.match(status.stdout, new RegExp(`busy \\(every connection taken\\): ${port}\\b`));
    assert.match(status.stdout, /a\.bin .* min live replicas 2\/2 +healthy/);
    // A fetch asking only that instance says it is busy, not that the cluster may be down.
    const refused = await cluster.fts(["fetch", "a.bin", dest, "--server", `127.0.0.1:${port}`]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /The server is busy \(every connection taken\): try again/);
  } finally {
    for (const socket of sockets) socket.destroy();
    await cluster.stop();
  }
});

/** One instance holding 8 parts of 1 MiB, re-hashing at most 2 MiB/s for one client address. */
function _verifyRateCluster() {
  return startDirectCluster({
    servers: 1,
    replicas: 1,
    partSize: "1MiB",
    files: { "big.bin": 8 * 1024 * 1024 },
    serveArgs: ["--verify-rate", "2MiB"],
  });
}

Deno.test("limits: 6 connections flooding part.verify and part.report of 1 MiB parts for 3 s hash at most --verify-rate 2MiB/s", async () => {
  const cluster = await _verifyRateCluster();
  const peers: Peer[] = [];
  try {
    const address = `127.0.0.1:${cluster.ports[0]}`;
    const digests = (await readManifestJson(cluster.dir)).files["big.bin"]!.parts.map((p) =>
      p.digest
    );
    // Requests wait their turn for the budget: a patient client, like the scrub.
    for (let i = 0; i < 6; i++) peers.push(await Peer.connect(address, { stallTimeoutMs: 30_000 }));
    const started = performance.now();
    const floodMs = 3_000;
    let answered = 0;
    await Promise.all(peers.map(async (peer, i) => {
      for (let n = i; performance.now() - started < floodMs; n++) {
        // Half of them report the (good) copy as bad: anyone may, and it re-hashes it too.
        const digest = digests[n % digests.length]!;
        if (i % 2 === 0) assert.equal(await peer.verifyPart(digest), "ok");
        else assert.equal(await peer.report(digest), false);
        answered++;
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const stats = await Peer.connect(address);
    const counters = await stats.stats();
    const verified = Number(counters.partsVerified) + Number(counters.reportsReceived);
    stats.close();
    // 2 MiB/s of 1 MiB parts, plus one for the burst the budget starts with.
    const bound = Math.ceil(2 * seconds) + 1;
    assert.ok(verified >= 1 && answered === verified, `${answered} answered, ${verified} hashed`);
    assert.ok(
      verified <= bound,
      `${verified} parts hashed in ${seconds.toFixed(1)} s (bound ${bound})`,
    );
  } finally {
    for (const peer of peers) peer.close();
    await cluster.stop();
  }
});

Deno.test("limits: 6 connections flooding signed part.has and part.put of stored 1 MiB parts for 3 s hash at most --verify-rate 2MiB/s", async () => {
  const cluster = await _verifyRateCluster();
  const peers: Peer[] = [];
  try {
    const address = `127.0.0.1:${cluster.ports[0]}`;
    const stored = join(cluster.dir, "instances", String(cluster.ports[0]), "parts");
    const parts = (await readManifestJson(cluster.dir)).files["big.bin"]!.parts;
    const bytes = await Promise.all(
      parts.map((p) => Deno.readFile(join(stored, p.digest.slice(0, 2), p.digest))),
    );
    for (let i = 0; i < 6; i++) peers.push(await Peer.connect(address, { stallTimeoutMs: 30_000 }));
    const signer = await partSigner(peers[0]!);
    const started = performance.now();
    const floodMs = 3_000;
    let answered = 0;
    await Promise.all(peers.map(async (peer, i) => {
      for (let n = i; performance.now() - started < floodMs; n++) {
        // A writer's question, or a part.put of a copy already there: each re-hashes it.
        const part = parts[n % parts.length]!;
        if (i % 2 === 0) assert.equal(await peer.hasPart(part.digest, signer), part.size);
        else {
          const body = (async function* () {
            yield bytes[n % parts.length]!;
          })();
          assert.deepEqual(await peer.putPart(part.digest, part.size, body, signer), {
            stored: false,
          });
        }
        answered++;
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    // 2 MiB/s of 1 MiB parts, plus one for the burst the budget starts with.
    const bound = Math.ceil(2 * seconds) + 1;
    assert.ok(answered >= 1, "no request was answered");
    assert.ok(
      answered <= bound,
      `${answered} stored parts re-hashed in ${seconds.toFixed(1)} s (bound ${bound})`,
    );
  } finally {
    for (const peer of peers) peer.close();
    await cluster.stop();
  }
});

/** A file.get reply whose body says it is `bodyBytes` long, of which nothing is sent. */
function _hugeReply(name: string, bodyBytes: number): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ op: "file", name, generation: 1 }));
  const out = new Uint8Array(12 + header.length);
  out.set(rawPrefix(header.length, BigInt(bodyBytes)));
  out.set(header, 12);
  return out;
}

function _lie(name: string, size: number, partSize: number) {
  const count = size === 0 ? 0 : Math.ceil(size / partSize);
  return {
    header: { op: "file", name, generation: 1 },
    body: jsonBody({
      entry: {
        name,
        size,
        partSize,
        owner: "operator",
        created: "",
        parts: Array.from({ length: count }, (_, i) => ({
          digest: (i % 10).toString().repeat(64),
          size: Math.min(partSize, size - i * partSize),
          replicas: ["666"],
        })),
      },
      // Nothing listens on port 1: every part fetch fails.
      instances: { "666": "127.0.0.1:1" },
    }),
  };
}

Deno.test("limits: fetch from a lying server refuses a 200 MiB entry and a 100 GiB part, and leaves no partial file", async () => {
  const MiB = 1024 * 1024;
  const GiB = 1024 * MiB;
  const work = await tempDir("fts-liar-limits-");
  const cases = [
    {
      what: "a 200 MiB file.get reply",
      answer: (name: string) => ({ raw: _hugeReply(name, 200 * MiB) }),
      expect: /file\.get reply of 209715200 bytes, more than the \d+ allowed/,
    },
    {
      what: "a 100 GiB part",
      answer: (name: string) => _lie(name, 100 * GiB, 100 * GiB),
      expect: /part size 107374182400, outside 4096\.\.268435456/,
    },
    {
      what: "a 1 KiB part",
      answer: (name: string) => _lie(name, 10 * 1024, 1024),
      expect: /part size 1024, outside/,
    },
    {
      what: "parts no replica serves",
      answer: (name: string) => _lie(name, 10 * MiB, MiB),
      expect: /replicas failed/,
    },
  ];
  try {
    for (const { what, answer, expect } of cases) {
      const dest = join(work, "dest");
      await Deno.mkdir(dest);
      const liar = startLyingServer((request) =>
        request.op === "file.get" ? answer(String(request.name)) : undefined
      );
      try {
        const started = performance.now();
        const result = await runFts([
          "fetch",
          "wanted.bin",
          dest,
          "--server",
          liar.address,
          "--data",
          join(work, "nodata"),
          "--timeout",
          "2s",
        ]);
        assert.equal(result.code, 1, `${what}: ${result.stderr}`);
        assert.match(result.stderr, expect, what);
        assert.ok(performance.now() - started < 20_000, `${what} took too long`);
      } finally {
        await liar.stop();
      }
      // No partial file, control file or lock is left for a fetch that got nothing.
      assert.deepEqual([...Deno.readDirSync(dest)].map((e) => e.name), [], what);
      await Deno.remove(dest, { recursive: true });
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("limits: ls from a lying server refuses a 1001-file page and a list item with a number for a name", async () => {
  const work = await tempDir("fts-liar-list-");
  const row = (name: unknown) => ({ name, size: 1, parts: 1, owner: "operator", created: "" });
  const cases = [
    {
      what: "a page over the limit",
      files: Array.from({ length: 1001 }, (_, i) => row(`f${i}`)),
      expect: /file\.list page of 1001 files, more than the 1000 asked for/,
    },
    { what: "a number for a name", files: [row("ok"), row(42)], expect: /malformed file\.list/ },
  ];
  try {
    for (const { what, files, expect } of cases) {
      const liar = startLyingServer((request) =>
        request.op === "file.list"
          ? { header: { op: "files", generation: 1, more: true }, body: jsonBody(files) }
          : undefined
      );
      try {
        const listed = await runFts(["ls", "--server", liar.address, "--data", join(work, "no")]);
        assert.equal(listed.code, 1, `${what}: ${listed.stderr}`);
        assert.match(listed.stderr, expect, what);
        assert.ok(liar.requests.length <= 2, `${what}: ${liar.requests.length} requests`);
      } finally {
        await liar.stop();
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
