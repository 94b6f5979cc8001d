/**
 * One client connection as the handler sees it, and the small helpers that
 * keep a stuck or vanished peer from holding a connection slot: a deadline on
 * a write, a close that never throws, and telling a disconnect (nothing left
 * to answer) from an error worth an error frame.
 */
import { deadline } from "../base/deadline.ts";
import {
  type ByteSink,
  type ByteSource,
  encodeFrame,
  type Header,
  writeAll,
} from "../wire/frame.ts";

/** A connection the handler can drive: bytes in, bytes out, close. */
export interface Connection extends ByteSource, ByteSink {
  close(): void;
}

/** What one connection remembers between its requests. */
export interface ConnectionState {
  greeted: boolean;
  /** Reused for every part.get on the connection, allocated on the first. */
  dataBuffer: Uint8Array | undefined;
  /** Reused for every small range sent whole with its header, allocated on the first. */
  frameBuffer?: Uint8Array | undefined;
  /** The client's IP, when the listener told it. */
  address?: string | undefined;
}

/** Thrown when the only honest signal left is to drop the connection without a word. */
export class Disconnect extends Error {}

/** True when the peer is gone (or must be dropped): there is no one to send an error frame to. */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Disconnect || error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted || error instanceof Deno.errors.NotConnected;
}

/** Sends one last frame (an error) and closes, whether or not the peer still listens. */
export async function sendAndClose(conn: Connection, header: Header): Promise<void> {
  try {
    await writeAll(conn, encodeFrame(header));
  } catch {
    // The peer is gone; nothing to tell it.
  } finally {
    closeQuietly(conn);
  }
}

/**
 * Refuses a connection with one frame (BUSY), then reads what the client sent
 * meanwhile (its hello) for at most `drainMs` before closing: closing with
 * unread bytes makes the kernel send a reset, which can destroy the refusal
 * before the client reads it, and a client would then call a busy instance
 * down rather than busy.
 */
export async function refuseAndClose(
  conn: Connection,
  header: Header,
  drainMs: number,
): Promise<void> {
  const cancel = deadline(drainMs, () => closeQuietly(conn));
  try {
    await writeAll(conn, encodeFrame(header));
    await conn.read(new Uint8Array(_REFUSAL_DRAIN_BYTES));
  } catch {
    // The peer is gone, or the deadline closed it.
  } finally {
    cancel();
    closeQuietly(conn);
  }
}

/** Enough for a hello frame, which is all a refused client sends before reading. */
const _REFUSAL_DRAIN_BYTES = 64 * 1024;

/** Runs `onExpire` (which should abort the operation) if `promise` is not settled in time. */
export async function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  onExpire: () => void,
): Promise<T> {
  const cancel = deadline(ms, onExpire);
  try {
    return await promise;
  } finally {
    cancel();
  }
}

export function closeQuietly(conn: Connection): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
