/**
 * Unit tests of PartReader (lib/client/part_reader.ts) against in-process
 * instances over loopback, with tests/fault_proxy.ts in front of a replica
 * to cut its connection mid-part or make it vanish.
 */
import assert from "node:assert/strict";
import { FetchError } from "../lib/client/fetch_error.ts";
import { MemoryPartSink } from "../lib/client/memory_part_sink.ts";
import {
  PartReader,
  type PartReadEvent,
  type PartSink,
  type PartToRead,
} from "../lib/client/part_reader.ts";
import { PeerPool } from "../lib/client/peer_pool.ts";
import { defaultParallel, fetchParts, MAX_PARALLEL } from "../lib/client/fetch_parts.ts";
import { RejectedParts } from "../lib/client/destination_check.ts";
import { HashPool } from "../lib/hash/hash_pool.ts";
import { concatBytes } from "../lib/base/concat_bytes.ts";
import type { FileEntry } from "../lib/state/manifest.ts";
import { Peer } from "../lib/client/peer.ts";
import { FaultProxy } from "./fault_proxy.ts";
import { join } from "node:path";
import { seededBytes, sha256, storeBytes, withTempDir } from "./unit_helpers.ts";
import { flipByte, type Instance, withInstances } from "./unit_instances.ts";

/** Large enough that a cut after 1 MiB lands mid-part, well before its end. */
const PART_BYTES = 3 * 1024 * 1024 + 123;
/** Short limits, so a replica that vanished fails the read within the test's time. */
const TEST_TIMEOUT_MS = 500;

/** Stores the same part on every instance; returns the part as its entry would list it. */
async function _storeEverywhere(
  instances: Instance[],
  bytes: Uint8Array,
  ids: string[],
): Promise<PartToRead> {
  let digest = "";
  for (const { store } of instances) digest = await storeBytes(store, bytes);
  return { fileName: "f.bin", index: 0, digest, size: bytes.length, replicas: ids };
}

/** A reader over `addresses` (instance id to "host:port"), recording its events. */
function _reader(addresses: Record<string, string>): {
  reader: PartReader;
  events: PartReadEvent[];
  pool: PeerPool;
} {
  const events: PartReadEvent[] = [];
  const pool = new PeerPool({ connectTimeoutMs: TEST_TIMEOUT_MS, stallTimeoutMs: TEST_TIMEOUT_MS });
  const reader = new PartReader({
    pool,
    addressOf: (id) => addresses[id]!,
    onEvent: (event) => events.push(event),
  });
  return { reader, events, pool };
}

function _portOf(address: string): number {
  return Number(address.split(":").at(-1));
}

Deno.test("PartReader.read() continues from the byte reached on another replica when one dies mid-part (R=2)", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = seededBytes(PART_BYTES, 1);
    const part = await _storeEverywhere([a!, b!], bytes, ["a", "b"]);
    // "a" comes first for part 0; its connection is cut after about 1 MiB.
    const proxy = await FaultProxy.start({ port: _portOf(a!.address) }, {
      fault: { cutAfterBytes: 1024 * 1024 },
    });
    const { reader, events, pool } = _reader({ a: proxy.address, b: b!.address });
    try {
      const sink = new MemoryPartSink(part.size);
      const result = await reader.read(part, sink);
      assert.deepEqual(result, { from: "b", verified: true });
      assert.ok(sink.bytes.every((byte, i) => byte === bytes[i]), "the part's bytes differ");
      const failover = events.find((e) => e.type === "failover");
      assert.ok(failover?.type === "failover" && failover.from === "a", JSON.stringify(events));
      assert.ok(failover.at > 0 && failover.at < part.size, `failed over at ${failover.at}`);
      // "b" sent only the rest of the part, from the byte "a" reached.
      assert.equal(b!.server.counters.bytesServed, part.size - failover.at);
      assert.equal(reader.counters.failovers, 1);
      assert.equal(reader.counters.digestMismatches, 0);
      assert.equal(reader.counters.bytesReceived, part.size);
    } finally {
      pool.closeAll();
      await proxy.close();
    }
  });
});

Deno.test("PartReader.read() reports a corrupt replica and verifies the part from another (R=2)", async () => {
  await withInstances(2, async ([a, b]) => {
    const bytes = seededBytes(PART_BYTES, 2);
    const part = await _storeEverywhere([a!, b!], bytes, ["a", "b"]);
    await flipByte(a!.store, part.digest);
    const { reader, events, pool } = _reader({ a: a!.address, b: b!.address });
    try {
      const sink = new MemoryPartSink(part.size);
      const result = await reader.read(part, sink);
      assert.deepEqual(result, { from: "b", verified: true });
      assert.ok(sink.bytes.every((byte, i) => byte === bytes[i]), "the part's bytes differ");
      assert.deepEqual(events.filter((e) => e.type === "mismatch"), [
        { type: "mismatch", part: 0, replicas: ["a"] },
      ]);
      assert.equal(reader.counters.digestMismatches, 1);
      await reader.reportsSettled();
      const peer = await Peer.connect(a!.address);
      try {
        assert.ok((await peer.listParts()).quarantined.has(part.digest), "a kept its bad copy");
      } finally {
        peer.close();
      }
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.read() fails with an error naming the part when every replica fails (R=3: down, no copy, silent)", async () => {
  await withInstances(1, async ([a]) => {
    // "down": a port nothing listens on; "a" holds no copy; "silent" never answers.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const down = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    listener.close();
    const silent = await FaultProxy.start({ port: _portOf(a!.address) }, {
      fault: { blackhole: true },
    });
    const part: PartToRead = {
      fileName: "f.bin",
      index: 7,
      digest: "ab".repeat(32),
      size: 1000,
      replicas: ["down", "a", "silent"],
    };
    const { reader, pool } = _reader({ down, a: a!.address, silent: silent.address });
    try {
      const started = performance.now();
      await assert.rejects(reader.read(part, new MemoryPartSink(part.size)), (error) => {
        assert.ok(error instanceof FetchError, String(error));
        assert.match(error.message, /^Cannot fetch part 7 of "f\.bin": all 3 replicas failed$/);
        assert.deepEqual(error.failedParts, [7]);
        return true;
      });
      // Each replica gets at most ATTEMPTS_PER_REPLICA tries, each bounded by the timeouts.
      assert.ok(performance.now() - started < 20 * TEST_TIMEOUT_MS, "the read took too long");
    } finally {
      pool.closeAll();
      await silent.close();
    }
  });
});

Deno.test("PartReader.read() reads a range inside one part, unverified", async () => {
  await withInstances(1, async ([a]) => {
    const bytes = seededBytes(PART_BYTES, 3);
    const part = await _storeEverywhere([a!], bytes, ["a"]);
    const { reader, pool } = _reader({ a: a!.address });
    try {
      const sink = new MemoryPartSink(part.size);
      const start = 1_000_000;
      const end = 2_500_000;
      const result = await reader.read(part, sink, { start, end });
      assert.deepEqual(result, { from: "a", verified: false });
      assert.deepEqual(sink.bytes.subarray(start, end), bytes.subarray(start, end));
      assert.equal(a!.server.counters.bytesServed, end - start);
      await assert.rejects(reader.read(part, sink, { start: 10, end: part.size + 1 }), RangeError);
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.read() fetches a part again from byte 0 when the bytes the sink held are wrong", async () => {
  await withInstances(1, async ([a]) => {
    const bytes = seededBytes(PART_BYTES, 4);
    const part = await _storeEverywhere([a!], bytes, ["a"]);
    const { reader, events, pool } = _reader({ a: a!.address });
    try {
      // The sink holds zeros where the first 1000 bytes should be.
      const sink = new MemoryPartSink(part.size);
      const result = await reader.read(part, sink, { start: 1000 });
      assert.deepEqual(result, { from: "a", verified: true });
      assert.deepEqual(sink.bytes, bytes);
      assert.equal(reader.counters.digestMismatches, 0, "the replica was blamed");
      assert.deepEqual(events.filter((e) => e.type === "mismatch"), []);
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.read() stops at the sink's error, with no failover", async () => {
  await withInstances(2, async ([a, b]) => {
    const part = await _storeEverywhere([a!, b!], seededBytes(PART_BYTES, 5), ["a", "b"]);
    const { reader, pool } = _reader({ a: a!.address, b: b!.address });
    const full = new Error("disk full");
    const sink: PartSink = {
      restart: () => {},
      write: () => Promise.reject(full),
      digest: () => Promise.reject(new Error("never asked")),
    };
    try {
      await assert.rejects(reader.read(part, sink), (error) => error === full);
      assert.equal(reader.counters.failovers, 0);
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.read() spreads parts over hosts before instances: a host already sending is passed over", async () => {
  await withInstances(3, async ([a, b, c]) => {
    const bytes = seededBytes(PART_BYTES, 4);
    const first = await _storeEverywhere([a!, b!, c!], bytes, ["a"]);
    // "b" shares a's host (127.0.0.1); "c" is dialled as localhost, another host by name.
    // Part 2 of two replicas: the spread alone would take its first, "b".
    const second = { ...first, index: 2, replicas: ["b", "c"] };
    const { reader, pool } = _reader({
      a: a!.address,
      b: b!.address,
      c: `localhost:${_portOf(c!.address)}`,
    });
    try {
      // The first read has picked "a" by the time read() returns its promise.
      const reading = reader.read(first, new MemoryPartSink(first.size));
      const second_ = await reader.read(second, new MemoryPartSink(second.size));
      // "b" is idle too, but its host is sending part 0: "c" wins as the idle host.
      assert.deepEqual(second_, { from: "c", verified: true });
      assert.deepEqual(await reading, { from: "a", verified: true });
    } finally {
      pool.closeAll();
    }
  });
});

/** `count` small parts of 4-20 KiB stored on each of `instances`, listed with replicas `ids`. */
async function _smallParts(
  instances: Instance[],
  count: number,
  ids: string[],
): Promise<{ parts: PartToRead[]; bytes: Uint8Array[] }> {
  const parts: PartToRead[] = [];
  const bytes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = seededBytes(4096 + i * 1531, 100 + i);
    let digest = "";
    for (const { store } of instances) digest = await storeBytes(store, part);
    parts.push({ fileName: `s-${i}.bin`, index: 0, digest, size: part.length, replicas: ids });
    bytes.push(part);
  }
  return { parts, bytes };
}

Deno.test("PartReader.readMany() reads small parts spread over replicas, one connection and one request write each", async () => {
  await withInstances(2, async ([a, b]) => {
    const { parts, bytes } = await _smallParts([a!, b!], 12, ["a", "b"]);
    const { reader, events, pool } = _reader({ a: a!.address, b: b!.address });
    try {
      const items = parts.map((part) => ({ part, sink: new MemoryPartSink(part.size) }));
      const told: number[] = [];
      const results = await reader.readMany(items, new Uint8Array(64 * 1024), (i, result) => {
        // Told as each part arrives, with its bytes in the sink already.
        assert.equal(result?.verified, true);
        assert.deepEqual(items[i]!.sink.bytes, bytes[i]);
        told.push(i);
      });
      assert.deepEqual(
        told.toSorted((x, y) => x - y),
        parts.map((_, i) => i),
        "each part told once",
      );
      for (const [i, { sink }] of items.entries()) {
        assert.equal(results[i]?.verified, true, `part ${i}: ${JSON.stringify(results[i])}`);
        assert.deepEqual(sink.bytes, bytes[i]);
      }
      // Both replicas sent a share, each over one connection.
      const fromA = results.filter((r) => r?.from === "a").length;
      assert.ok(fromA >= 4 && fromA <= 8, `${fromA} of 12 parts from a`);
      for (const { server } of [a!, b!]) {
        assert.equal(server.counters.connections, 1);
        assert.equal(server.counters.partsServed, server === a!.server ? fromA : 12 - fromA);
      }
      assert.equal(events.filter((e) => e.type === "part").length, 12);
      assert.deepEqual(reader.counters, {
        bytesReceived: parts.reduce((sum, p) => sum + p.size, 0),
        failovers: 0,
        digestMismatches: 0,
      });
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.readMany() leaves a refused part and a corrupt one to read(), reports the corrupt copy, and reads the rest on the same connection", async () => {
  await withInstances(1, async ([a]) => {
    const { parts, bytes } = await _smallParts([a!], 6, ["a"]);
    await flipByte(a!.store, parts[4]!.digest);
    // A part "a" never held: it answers NOT_FOUND and goes on with the next.
    parts[2] = { ...parts[2]!, digest: "cd".repeat(32) };
    const { reader, events, pool } = _reader({ a: a!.address });
    try {
      const items = parts.map((part) => ({ part, sink: new MemoryPartSink(part.size) }));
      const results = await reader.readMany(items, new Uint8Array(64 * 1024));
      assert.deepEqual(results.map((r) => r?.verified), [
        true,
        true,
        undefined,
        true,
        undefined,
        true,
      ]);
      for (const i of [0, 1, 3, 5]) assert.deepEqual(items[i]!.sink.bytes, bytes[i]);
      assert.equal(reader.counters.failovers, 1);
      assert.equal(reader.counters.digestMismatches, 1);
      const failover = events.find((e) => e.type === "failover");
      assert.ok(
        failover?.type === "failover" && /is not stored here/.test(failover.reason),
        JSON.stringify(failover),
      );
      await reader.reportsSettled();
      // One connection for every read, one of its own for each report: the corrupt copy,
      // and the listed copy it does not hold.
      assert.equal(a!.server.counters.connections, 3);
      assert.equal(a!.server.counters.reportedMissing, 1);
      const peer = await Peer.connect(a!.address);
      try {
        assert.ok(
          (await peer.listParts()).quarantined.has(parts[4]!.digest),
          "a kept its bad copy",
        );
      } finally {
        peer.close();
      }
    } finally {
      pool.closeAll();
    }
  });
});

Deno.test("PartReader.readMany() keeps what arrived before a connection was cut and leaves the rest to read()", async () => {
  await withInstances(1, async ([a]) => {
    const { parts, bytes } = await _smallParts([a!], 8, ["a"]);
    // Cut after the first three parts' bytes (4096 + 5627 + 7158, with their headers).
    const proxy = await FaultProxy.start({ port: _portOf(a!.address) }, {
      fault: { cutAfterBytes: 4096 + 5627 + 7158 + 1000 },
    });
    const { reader, events, pool } = _reader({ a: proxy.address });
    try {
      const items = parts.map((part) => ({ part, sink: new MemoryPartSink(part.size) }));
      const told = new Map<number, boolean>();
      const results = await reader.readMany(
        items,
        new Uint8Array(64 * 1024),
        (i, result) => told.set(i, result?.verified === true),
      );
      // The parts after the cut are told too, as not read.
      assert.deepEqual(
        [...told].toSorted(([x], [y]) => x - y),
        results.map((r, i) => [i, r?.verified === true]),
      );
      const read = results.filter((r) => r?.verified).length;
      assert.deepEqual(results.map((r) => r?.verified), [
        ...Array(read).fill(true),
        ...Array(8 - read).fill(undefined),
      ]);
      assert.ok(read >= 1 && read <= 3, `${read} parts before the cut`);
      for (let i = 0; i < read; i++) assert.deepEqual(items[i]!.sink.bytes, bytes[i]);
      assert.equal(reader.counters.failovers, 8 - read);
      assert.equal(events.filter((e) => e.type === "failover").length, 8 - read);
      // The parts left are read() as any, and arrive.
      for (let i = read; i < 8; i++) {
        assert.deepEqual(await reader.read(parts[i]!, items[i]!.sink), {
          from: "a",
          verified: true,
        });
        assert.deepEqual(items[i]!.sink.bytes, bytes[i]);
      }
    } finally {
      pool.closeAll();
      await proxy.close();
    }
  });
});

Deno.test("defaultParallel(): at least 4, else 2 per host the parts are on, at most MAX_PARALLEL", () => {
  const entry = (replicas: string[][]) =>
    ({ parts: replicas.map((ids) => ({ replicas: ids })) }) as unknown as FileEntry;
  const loopback = (id: string) => `127.0.0.1:${id}`;
  const hosts = (id: string) => `10.0.0.${id}:9001`;
  assert.equal(defaultParallel(entry([["1", "2", "3"], ["4", "5", "6"]]), loopback), 4);
  assert.equal(defaultParallel(entry([["1", "2"], ["3", "4"], ["5", "1"]]), hosts), 10);
  assert.equal(defaultParallel(entry([["1", "2"]]), hosts), 4);
  const many = entry([Array.from({ length: 200 }, (_, i) => String(i))]);
  assert.equal(defaultParallel(many, (id) => `10.1.${id}.1:9001`), MAX_PARALLEL);
});

Deno.test("fetchParts() gives a free track the part whose host is idlest, not the next in order", async () => {
  await withInstances(3, async ([a, b, c]) => {
    await withTempDir("fts-fetch-parts-", async (dir) => {
      const partBytes = 4096;
      const bytes = [0, 1, 2].map((i) => seededBytes(partBytes, 40 + i));
      const digests: string[] = [];
      for (const part of bytes) {
        for (const { store } of [a!, b!, c!]) digests.push(await storeBytes(store, part));
      }
      // Parts 0 and 1 on the host 127.0.0.1 ("a", "b"); part 2 on "localhost" ("c").
      const replicas = [["a"], ["b"], ["c"]];
      const entry = {
        name: "f.bin",
        size: 3 * partBytes,
        partSize: partBytes,
        parts: bytes.map((_, i) => ({
          digest: digests[3 * i]!,
          size: partBytes,
          replicas: replicas[i]!,
        })),
      } as unknown as FileEntry;
      const { reader, pool } = _reader({
        a: a!.address,
        b: b!.address,
        c: `localhost:${_portOf(c!.address)}`,
      });
      const started: number[] = [];
      const loads = () => [["a"], ["b"], ["b", "c"]].map((ids) => reader.hostLoad(ids));
      assert.deepEqual(loads(), [0, 0, 0]);
      const read = reader.read.bind(reader);
      reader.read = (part, sink, range) => {
        started.push(part.index);
        // When the second track takes a part, the first is reading part 0 from "a".
        if (started.length === 2) assert.deepEqual(loads(), [1, 1, 0]);
        return read(part, sink, range);
      };
      const workPath = join(dir, "f.bin.work");
      await Deno.writeFile(workPath, new Uint8Array(entry.size));
      const hashes = new HashPool({ workers: 1 });
      const verified: number[] = [];
      // No destination check runs: no part comes later.
      const rejected = new RejectedParts();
      rejected.end();
      try {
        await fetchParts({
          entry,
          reader,
          workPath,
          destDir: dir,
          hashes,
          quickCheck: true,
          parallel: 2,
          missing: [0, 1, 2],
          later: { most: 0, rejected },
          resumeAt: new Map(),
          onVerified: (index) => verified.push(index),
          onStopping: () => {},
        });
      } finally {
        hashes.close();
        pool.closeAll();
      }
      // The second track skips part 1, whose host is sending part 0.
      assert.deepEqual(started, [0, 2, 1]);
      assert.deepEqual(verified.toSorted(), [0, 1, 2]);
      assert.deepEqual(await Deno.readFile(workPath), concatBytes(...bytes));
      assert.deepEqual(loads(), [0, 0, 0]);
    });
  });
});

Deno.test("MemoryPartSink: bytes received into its own memory (receiveInto) are kept in place, bytes from elsewhere are copied in", async () => {
  const bytes = seededBytes(10_000, 7);
  const sink = new MemoryPartSink(bytes.length);
  const view = sink.receiveInto(0, 4_000);
  view.set(bytes.subarray(0, 4_000));
  await sink.write(0, view);
  // Bytes from elsewhere are copied in.
  await sink.write(4_000, bytes.subarray(4_000));
  assert.deepEqual(sink.bytes, bytes);
  assert.deepEqual(await sink.digest(), { digest: sha256(bytes), bytes: bytes.length });
  assert.equal(sink.receiveInto(9_990, 100).length, 10, "a view never reaches past the part");
});
