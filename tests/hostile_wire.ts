/**
 * Raw wire access for hostile-input tests: send any bytes at a live instance
 * and see what comes back, frame by frame, with a deadline so that a server
 * that hangs fails the test instead of stalling it.
 */
import {
  encodeFrame,
  FrameReader,
  type Header,
  PREFIX_BYTES,
  PROTOCOL_VERSION,
  ReadTimeoutError,
} from "../lib/wire/frame.ts";

export const HELLO = encodeFrame({ op: "hello", version: PROTOCOL_VERSION, agent: "hostile" });

export interface Outcome {
  /** Headers of the frames the server sent, in order. */
  replies: Header[];
  /** The server closed (or reset) the connection. */
  closed: boolean;
  /** Nothing happened before the deadline: the server neither answered nor closed. */
  hung: boolean;
}

/** A frame prefix with arbitrary lengths, for lying about sizes. */
export function rawPrefix(headerLength: number, bodyLength: bigint): Uint8Array {
  const out = new Uint8Array(PREFIX_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength >>> 0);
  view.setBigUint64(4, BigInt.asUintN(64, bodyLength));
  return out;
}

/** A frame whose header is these exact bytes (valid JSON or not). */
export function rawFrame(header: Uint8Array | string, body = new Uint8Array(0)): Uint8Array {
  const head = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(PREFIX_BYTES + head.length + body.length);
  out.set(rawPrefix(head.length, BigInt(body.length)));
  out.set(head, PREFIX_BYTES);
  out.set(body, PREFIX_BYTES + head.length);
  return out;
}

/**
 * Connects, sends `bytes` (after a hello unless told not to), half-closes
 * unless told not to, and reads every frame until the server closes or
 * `deadlineMs` passes without a byte.
 */
export async function probe(
  port: number,
  bytes: Uint8Array,
  options: { hello?: boolean; halfClose?: boolean; deadlineMs?: number } = {},
): Promise<Outcome> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const outcome: Outcome = { replies: [], closed: false, hung: false };
  try {
    try {
      if (options.hello ?? true) await _writeAll(conn, HELLO);
      await _writeAll(conn, bytes);
      if (options.halfClose ?? true) await conn.closeWrite();
    } catch {
      // The server closed on us mid-write: what it sent before that is still readable.
    }
    const reader = new FrameReader(conn, { timeoutMs: options.deadlineMs ?? 10_000 });
    reader.onTimeout = () => {
      try {
        conn.close();
      } catch { /* closed */ }
    };
    while (true) {
      let head: Awaited<ReturnType<FrameReader["readHead"]>>;
      try {
        head = await reader.readHead();
      } catch (error) {
        if (error instanceof ReadTimeoutError) outcome.hung = true;
        else outcome.closed = true;
        break;
      }
      if (head === null) {
        outcome.closed = true;
        break;
      }
      outcome.replies.push(head.header);
      try {
        await reader.skipBody();
      } catch (error) {
        if (error instanceof ReadTimeoutError) outcome.hung = true;
        else outcome.closed = true;
        break;
      }
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return outcome;
}

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
}

/** The error codes in an outcome's replies. */
export function errorCodes(outcome: Outcome): string[] {
  return outcome.replies.filter((h) => h.op === "error").map((h) => String(h.code));
}

/** Resident memory of a process in bytes, from /proc. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`No VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}
