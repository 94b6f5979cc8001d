/**
 * Storing a part needs a signature: an instance refuses an unsigned part.put,
 * one signed for another cluster, for another digest or size, or signed more
 * than 5 minutes ago (UNAUTHORIZED, nothing stored), and stores a signed one.
 */
import assert from "node:assert/strict";
import { Peer } from "../lib/client/peer.ts";
import { sha256Hex } from "../lib/hash/sha256.ts";
import { encodeFrame, FrameReader, type Header, PROTOCOL_VERSION } from "../lib/wire/frame.ts";
import { signPartPut } from "../lib/auth/part_put_signature.ts";
import { copyIdentity } from "../lib/ops/part_copy.ts";
import { exists } from "../lib/base/fs_util.ts";
import { startCluster, storedPartPath } from "./harness.ts";
import { clusterIdAt, partSigner } from "./part_signer.ts";

const KiB = 1024;

/** Sends one part.put frame by hand and returns the reply's op or error code. */
async function _put(port: number, header: Header, body: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reader = new FrameReader(conn);
    for (
      const frame of [
        encodeFrame({ op: "hello", version: PROTOCOL_VERSION }),
        encodeFrame(header, body),
      ]
    ) {
      let done = 0;
      while (done < frame.length) done += await conn.write(frame.subarray(done));
    }
    const replies: string[] = [];
    for (let i = 0; i < 2; i++) {
      const head = await reader.readHead();
      if (head === null) break;
      replies.push(String(head.header.op === "error" ? head.header.code : head.header.op));
    }
    return replies[1] ?? "closed";
  } finally {
    conn.close();
  }
}

Deno.test("part.put: unsigned, other cluster, other digest, 6 min old are UNAUTHORIZED and store nothing; signed is stored", async () => {
  const cluster = await startCluster({ servers: 1, replicas: 1, files: { "a.bin": 10 * KiB } });
  try {
    const port = cluster.ports[0]!;
    const id = String(port);
    const body = new Uint8Array(64 * KiB).fill(42);
    const digest = await sha256Hex(body);
    const clusterId = await clusterIdAt(`127.0.0.1:${port}`);
    const identity = await copyIdentity();
    const sign = async (
      fields: { cluster: string; digest: string; size: number },
      now?: number,
    ) => ({
      op: "part.put",
      digest,
      cluster: fields.cluster,
      auth: await signPartPut(identity, fields, now),
    });
    const size = body.length;
    const refused: [string, Header][] = [
      ["unsigned", { op: "part.put", digest }],
      ["other cluster", await sign({ cluster: "another-cluster", digest, size })],
      ["other digest", await sign({ cluster: clusterId, digest: "1".repeat(64), size })],
      ["other size", await sign({ cluster: clusterId, digest, size: size + 1 })],
      ["6 min old", await sign({ cluster: clusterId, digest, size }, Date.now() - 6 * 60_000)],
    ];
    for (const [what, header] of refused) {
      assert.equal(await _put(port, header, body), "UNAUTHORIZED", what);
      assert.ok(!(await exists(storedPartPath(cluster.dir, id, digest))), what);
    }
    const peer = await Peer.connect(`127.0.0.1:${port}`);
    try {
      const unsigned = { identity, cluster: "" };
      await assert.rejects(
        peer.putPart(digest, size, [body].values() as never, unsigned),
        /UNAUTHORIZED|not this one/,
      );
    } finally {
      peer.close();
    }
    const signed = await Peer.connect(`127.0.0.1:${port}`);
    try {
      const reply = await signed.putPart(
        digest,
        size,
        [body].values() as never,
        await partSigner(signed),
      );
      assert.deepEqual(reply, { stored: true });
    } finally {
      signed.close();
    }
    assert.ok(await exists(storedPartPath(cluster.dir, id, digest)));
  } finally {
    await cluster.stop();
  }
});
