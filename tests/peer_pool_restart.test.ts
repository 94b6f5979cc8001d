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
import { startDirectCluster } from "./direct_cluster.ts";
import { readManifestJson } from "./harness.ts";

/** Idle connections the reader leaves in its pool: more than its tries per replica. */
const IDLE_CONNECTIONS = 3;

Deno.test("PartReader: connections an instance closed by restarting cost no failover (R=1)", async () => {
  const cluster = await startDirectCluster({
    servers: 1,
    replicas: 1,
    partSize: "64KiB",
    files: { "f.bin": 5 * 64 * 1024 },
  });
  const pool = new PeerPool({ connectTimeoutMs: 5_000, stallTimeoutMs: 5_000 });
  try {
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
    const readAll = async (label: string) => {
      // At once: each read takes a connection of its own, which goes back to the pool.
      const sinks = parts.map((part) => new MemoryPartSink(part.size));
      const results = await Promise.all(parts.map((part, i) => reader.read(part, sinks[i]!)));
      assert.ok(results.every((result) => result.verified), label);
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
    assert.deepEqual(events.filter((event) => event.type !== "part"), []);
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
    const entry = (await readManifestJson(cluster.dir)).files["f.bin"]!;
    const events: PartReadEvent[] = [];
    const reader = new PartReader({
      pool,
      addressOf: (id) => `127.0.0.1:${id}`,
      onEvent: (event) => events.push(event),
    });
    const readAll = async (label: string) => {
      const results = await Promise.all(entry.parts.map((part, index) =>
        reader.read(
          {
            fileName: "f.bin",
            index,
            digest: part.digest,
            size: part.size,
            replicas: part.replicas,
          },
          new MemoryPartSink(part.size),
        )
      ));
      assert.ok(results.every((result) => result.verified), label);
    };
    await readAll("first");
    for (let round = 1; round <= 2; round++) {
      // The pooled connections idle past the instance's timeout: it says TIMEOUT and closes them.
      await new Promise((resolve) => setTimeout(resolve, 600));
      await readAll(`after idling ${round}`);
    }
    assert.deepEqual(events.filter((event) => event.type !== "part"), []);
  } finally {
    pool.closeAll();
    await cluster.stop();
  }
});
