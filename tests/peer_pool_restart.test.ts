/**
 * Pooled connections outliving their instance: a long-lived reader (a
 * gateway, a batch) keeps idle connections to each instance, and an instance
 * that restarts closes them all. Using one must cost no failover: counted as
 * failures, three of them made a healthy part "unreachable" (all replicas
 * failed) and a gateway answer 502 while every instance was up.
 */
import assert from "node:assert/strict";
import { MemoryPartSink } from "../lib/client/memory_part_sink.ts";
import { PartReader, type PartReadEvent, type PartToRead } from "../lib/client/part_reader.ts";
import { PeerPool } from "../lib/client/peer_pool.ts";
import { type DirectCluster, startDirectCluster } from "./direct_cluster.ts";
import { readManifestJson } from "./harness.ts";

/** Idle connections the reader leaves in its pool: more than its tries per replica. */
const IDLE_CONNECTIONS = 3;

/**
 * A reader of every part of f.bin on the one-instance `cluster` through
 * `pool`, recording its events: readEach() reads them all at once (each on a
 * connection of its own, which goes back to the pool) and checks them.
 */
async function _reader(cluster: DirectCluster, pool: PeerPool) {
  const entry = (await readManifestJson(cluster.dir)).files["f.bin"]!;
  const parts: PartToRead[] = entry.parts.map((part, index) => ({
    fileName: "f.bin",
    index,
    digest: part.digest,
    size: part.size,
    replicas: part.replicas,
  }));
  const events: PartReadEvent[] = [];
  const reader = new PartReader({
    pool,
    addressOf: (id) => `127.0.0.1:${id}`,
    onEvent: (event) => events.push(event),
  });
  const readEach = async (label: string) => {
    const results = await Promise.all(
      parts.map((part) => reader.read(part, new MemoryPartSink(part.size))),
    );
    assert.ok(results.every((result) => result.verified), label);
  };
  /** Anything but a part read: a failover, a replica given up. */
  const troubles = () => events.filter((event) => event.type !== "part");
  return { parts, reader, readEach, troubles };
}

Deno.test("PartReader: connections an instance closed by restarting cost no failover (R=1)", async () => {
  const cluster = await startDirectCluster({
    servers: 1,
    replicas: 1,
    partSize: "64KiB",
    files: { "f.bin": 5 * 64 * 1024 },
  });
  const pool = new PeerPool({ connectTimeoutMs: 5_000, stallTimeoutMs: 5_000 });
  try {
    const { parts, reader, readEach, troubles } = await _reader(cluster, pool);
    const readAll = async (label: string) => {
      await readEach(label);
      const many = await reader.readMany(
        parts.slice(0, IDLE_CONNECTIONS).map((part) => ({
          part,
          sink: new MemoryPartSink(part.size),
        })),
        new Uint8Array(64 * 1024),
      );
      assert.ok(many.every((result) => result?.verified), `${label}: readMany`);
    };
    await readAll("before the restart");
    for (let round = 1; round <= 2; round++) {
      await cluster.killInstance(0);
      await cluster.startInstance(0);
      await readAll(`after restart ${round}`);
    }
    assert.deepEqual(troubles(), []);
  } finally {
    pool.closeAll();
    await cluster.stop();
  }
});

Deno.test("PartReader: connections an instance closed for idling (its TIMEOUT notice) cost no failover (R=1)", async () => {
  const cluster = await startDirectCluster({
    servers: 1,
    replicas: 1,
    partSize: "64KiB",
    files: { "f.bin": 3 * 64 * 1024 },
    serveArgs: ["--idle-timeout", "300ms"],
  });
  const pool = new PeerPool({ connectTimeoutMs: 5_000, stallTimeoutMs: 5_000 });
  try {
    const { readEach, troubles } = await _reader(cluster, pool);
    await readEach("first");
    for (let round = 1; round <= 2; round++) {
      // The pooled connections idle past the instance's timeout: it says TIMEOUT and closes them.
      await new Promise((resolve) => setTimeout(resolve, 600));
      await readEach(`after idling ${round}`);
    }
    assert.deepEqual(troubles(), []);
  } finally {
    pool.closeAll();
    await cluster.stop();
  }
});
