import assert from "node:assert/strict";
import { join } from "node:path";
import { Peer } from "../lib/client/peer.ts";
import { assertSameFile, newDest, readManifestJson, startCluster } from "./harness.ts";

/** Round trips measured; the median is what a fetch of many small parts pays per part. */
const ROUND_TRIPS = 50;
/**
 * Generous bound on the median small part.get round trip: on loopback it is
 * well under a millisecond, but a reply sent in two writes without no-delay
 * waits for the client's delayed ACK (about 40 ms) every time.
 */
const MAX_MEDIAN_ROUND_TRIP_MS = 20;

Deno.test(
  "fetch: 1,280 parts of 4 KiB (5 MiB) arrive, a small part.get takes no delayed-ACK wait",
  async () => {
    const cluster = await startCluster({
      servers: 2,
      replicas: 1,
      partSize: "4KiB",
      files: { "small_parts.bin": 5 * 1024 * 1024 },
    });
    try {
      const manifest = await readManifestJson(cluster.dir);
      const first = manifest.files["small_parts.bin"]!.parts[0]!;
      const [digest, holders] = [first.digest, first.replicas];
      const peer = await Peer.connect(`127.0.0.1:${holders[0]}`);
      const body = new Uint8Array(4096);
      const times: number[] = [];
      try {
        for (let i = 0; i < ROUND_TRIPS; i++) {
          const started = performance.now();
          await peer.requestPart(digest, 0, body.length);
          let got = 0;
          while (got < body.length) got += await peer.reader.readBody(body.subarray(got));
          times.push(performance.now() - started);
        }
      } finally {
        peer.close();
      }
      times.sort((a, b) => a - b);
      const median = times[Math.floor(times.length / 2)]!;
      const dest = await newDest(cluster);
      const started = performance.now();
      const result = await cluster.fts(["fetch", "small_parts.bin", dest]);
      assert.equal(result.code, 0, result.stderr);
      console.log(
        `median part.get ${median.toFixed(2)} ms; fetch of 1,280 parts ${
          Math.round(performance.now() - started)
        } ms`,
      );
      assert.ok(
        median < MAX_MEDIAN_ROUND_TRIP_MS,
        `median part.get round trip ${median.toFixed(1)} ms (want < ${MAX_MEDIAN_ROUND_TRIP_MS})`,
      );
      await assertSameFile(
        join(dest, "small_parts.bin"),
        join(cluster.work, "src", "small_parts.bin"),
      );
    } finally {
      await cluster.stop();
    }
  },
);
