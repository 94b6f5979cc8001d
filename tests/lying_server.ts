/**
 * A lying instance for hostile-client tests: it answers hello like an fts
 * instance, then every request with whatever the test's `answer` makes of
 * it (a header and an optional body, sent as given, when it is ready), or
 * NOT_FOUND. Lets a test see what a client does with replies no honest
 * instance would send.
 */
import { encodeFrame, FrameReader, type Header, PROTOCOL_VERSION } from "../lib/wire/frame.ts";

/** A reply frame, or raw bytes (to lie about lengths), or undefined for NOT_FOUND. */
export type LyingAnswer = (request: Header) => _Lie | Promise<_Lie>;

type _Lie = { header: Header; body?: Uint8Array } | { raw: Uint8Array } | undefined;

export interface LyingServer {
  port: number;
  address: string;
  /** Requests seen, in order (hello excluded). */
  requests: Header[];
  stop(): Promise<void>;
}

export function startLyingServer(answer: LyingAnswer): LyingServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handlers: Promise<void>[] = [];
  const requests: Header[] = [];
  const conns = new Set<Deno.Conn>();
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    const reader = new FrameReader(conn, { timeoutMs: 10_000 });
    try {
      while (true) {
        const head = await reader.readHead();
        if (head === null) break;
        await reader.skipBody();
        let reply: Uint8Array;
        if (head.header.op === "hello") {
          reply = encodeFrame({ op: "hello", version: PROTOCOL_VERSION, id: "666", generation: 1 });
        } else {
          requests.push(head.header);
          const lie = await answer(head.header);
          reply = lie === undefined
            ? encodeFrame({ op: "error", code: "NOT_FOUND", message: "nothing here" })
            : "raw" in lie
            ? lie.raw
            : encodeFrame(lie.header, lie.body);
        }
        let done = 0;
        while (done < reply.length) done += await conn.write(reply.subarray(done));
      }
    } catch {
      /* client gone */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) handlers.push(serve(conn));
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    requests,
    async stop() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await Promise.all(handlers);
    },
  };
}
