/**
 * Unit tests of lib/client/peer.ts against a hand-written instance on loopback that
 * misbehaves in ways a real one only does when frozen or broken.
 */
import assert from "node:assert/strict";
import { Peer } from "../lib/client/peer.ts";
import { encodeFrame, FrameReader, PROTOCOL_VERSION } from "../lib/wire/frame.ts";
import { assertCode } from "./unit_helpers.ts";
import { copyIdentity } from "../lib/ops/part_copy.ts";

/** Far more than loopback socket buffers hold, so the writes must block. */
const STUCK_PART_BYTES = 64 * 1024 * 1024;
/** The test fails, instead of hanging the suite, if the write is still blocked by then. */
const GUARD_MS = 20_000;

/** An instance that answers hello and then never reads again. */
async function withDeafInstance(fn: (address: string) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const reader = new FrameReader(conn);
      await reader.readHead();
      await conn.write(
        encodeFrame({ op: "hello", version: PROTOCOL_VERSION, id: "deaf", generation: 0 }),
      );
    }
  })().catch(() => {});
  try {
    await fn(`127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  } finally {
    listener.close();
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await accepting;
  }
}

Deno.test("Peer.putPart() fails with TIMEOUT when the instance stops reading the body", async () => {
  await withDeafInstance(async (address) => {
    const peer = await Peer.connect(address, { stallTimeoutMs: 300 });
    const chunk = new Uint8Array(1024 * 1024);
    async function* body() {
      for (let sent = 0; sent < STUCK_PART_BYTES; sent += chunk.length) yield chunk;
    }
    let guard: ReturnType<typeof setTimeout> | undefined;
    try {
      const stuck = new Promise<never>((_, reject) => {
        guard = setTimeout(
          () => reject(new Error(`putPart still blocked after ${GUARD_MS} ms`)),
          GUARD_MS,
        );
      });
      await assert.rejects(
        Promise.race([
          peer.putPart("0".repeat(64), STUCK_PART_BYTES, body(), {
            identity: await copyIdentity(),
            cluster: "test",
          }),
          stuck,
        ]),
        assertCode("TIMEOUT"),
      );
      assert.ok(peer.closed, "the stalled connection was not closed");
    } finally {
      clearTimeout(guard);
      peer.close();
    }
  });
});
