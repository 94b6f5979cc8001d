/** Unit tests of ReplyWriter (lib/server/reply_writer.ts) over a recording connection. */
import assert from "node:assert/strict";
import { GATHER_BYTES, ReplyWriter } from "../lib/server/reply_writer.ts";
import type { Connection } from "../lib/server/connection.ts";

/** A connection that records each write and answers reads with 7 bytes. */
function _recording(): { conn: Connection; writes: number[][]; closed: () => boolean } {
  const writes: number[][] = [];
  let closed = false;
  const conn: Connection = {
    read: (buffer) => Promise.resolve(buffer.length === 0 ? 0 : 7),
    // Takes at most 5 bytes a call, as a socket may.
    write: (bytes) => {
      writes.push([...bytes.subarray(0, 5)]);
      return Promise.resolve(Math.min(5, bytes.length));
    },
    close: () => void (closed = true),
  };
  return { conn, writes, closed: () => closed };
}

const _bytes = (...values: number[]) => new Uint8Array(values);

Deno.test("ReplyWriter gathers small replies while requests wait and writes them, in order, before the next read", async () => {
  const { conn, writes } = _recording();
  let waiting = true;
  const out = new ReplyWriter(conn, () => 1000, () => waiting);
  assert.equal(await out.write(_bytes(1, 2)), 2);
  assert.equal(await out.write(_bytes(3)), 1);
  assert.equal(await out.write(_bytes(4, 5, 6)), 3);
  assert.deepEqual(writes, []);
  assert.equal(out.pending, 6);
  waiting = false;
  assert.equal(await out.read(new Uint8Array(16)), 7);
  // One write of the six bytes (the connection took five, then the last one).
  assert.deepEqual(writes, [[1, 2, 3, 4, 5], [6]]);
  assert.equal(out.pending, 0);
  // Nothing waits: a reply leaves at once.
  assert.equal(await out.write(_bytes(7)), 1);
  assert.deepEqual(writes.at(-1), [7]);
});

Deno.test("ReplyWriter writes what it gathered before a reply that does not fit, and after stopGathering gathers nothing", async () => {
  const { conn, writes, closed } = _recording();
  const out = new ReplyWriter(conn, () => 1000, () => true);
  await out.write(_bytes(1));
  const large = new Uint8Array(GATHER_BYTES).fill(9);
  assert.equal(await out.write(large), 5);
  assert.deepEqual(writes.slice(0, 2), [[1], [9, 9, 9, 9, 9]]);
  assert.equal(out.pending, 0);
  writes.length = 0;
  await out.write(_bytes(2));
  out.stopGathering();
  await out.write(_bytes(3));
  assert.deepEqual(writes, [[2], [3]]);
  out.close();
  assert.ok(closed());
});

Deno.test("ReplyWriter closes a connection whose write makes no progress in time", async () => {
  let closed = false;
  const conn: Connection = {
    read: () => Promise.resolve(null),
    // A client that never reads: the write never completes.
    write: () => new Promise<number>(() => {}),
    close: () => void (closed = true),
  };
  const out = new ReplyWriter(conn, () => 20, () => false);
  void out.write(_bytes(1));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(closed, "the stuck write's connection was closed");
});
