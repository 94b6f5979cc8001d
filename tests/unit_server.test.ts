/**
 * Unit tests of lib/server/server.ts: the connection handler driven in-process over
 * real loopback TCP connections (Deno.listen on port 0), with a real PartStore
 * and manifest in a temp directory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { contentIdOf, type FileEntry } from "../lib/state/manifest.ts";
import { type PartSigner, Peer } from "../lib/client/peer.ts";
import { openManifestStore } from "../lib/state/open_manifest_store.ts";
import { putEntries, testEntry, updateManifest } from "./manifest_util.ts";
import { MAX_LIST_PAGE_FILES } from "../lib/wire/ops_files.ts";
import { MAX_SERVED_LIST_PAGE } from "../lib/server/handlers_files.ts";
import {
  encodeFrame,
  FrameReader,
  type Header,
  MAX_HEADER_BYTES,
  PREFIX_BYTES,
  PROTOCOL_VERSION,
  writeAll,
} from "../lib/wire/frame.ts";
import { Server } from "../lib/server/server.ts";
import { type ServerLimits } from "../lib/server/handler.ts";
import { PartStore } from "../lib/state/store.ts";
import {
  assertCode,
  concat,
  randomBytes,
  sha256,
  storeBytes,
  withTempDir,
} from "./unit_helpers.ts";
import { copyIdentity } from "../lib/ops/part_copy.ts";
import { loadOrCreateClusterId } from "../lib/state/cluster_id.ts";
import { fileMutationsContext, Mutations } from "../lib/server/mutations.ts";

interface TestServer {
  server: Server;
  store: PartStore;
  dir: string;
  address: string;
  close(): Promise<void>;
}

async function startServer(limits: Partial<ServerLimits> = {}): Promise<TestServer> {
  const dir = await Deno.makeTempDir({ prefix: "fts-unit-server-" });
  const store = new PartStore(join(dir, "instances", "test"));
  await store.init();
  const server = new Server({
    id: "test",
    store,
    manifest: openManifestStore(dir),
    // part.put checks its signature against the cluster id the mutations hold.
    mutations: () => Promise.resolve(new Mutations(fileMutationsContext(dir))),
    addressOf: (id) => `127.0.0.1:${id}`,
    limits,
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handlers: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) handlers.push(server.accept(conn));
  })().catch(() => {});
  return {
    server,
    store,
    dir,
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      server.closeAll();
      await accepting;
      await Promise.all(handlers);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function withServer(
  fn: (t: TestServer) => Promise<void>,
  limits: Partial<ServerLimits> = {},
): Promise<void> {
  const t = await startServer(limits);
  try {
    await fn(t);
  } finally {
    await t.close();
  }
}

/** A client that speaks raw frames, to send what Peer never would. */
class RawClient {
  readonly conn: Deno.TcpConn;
  readonly reader: FrameReader;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new FrameReader(conn, { timeoutMs: 10_000 });
  }

  static async connect(address: string): Promise<RawClient> {
    const port = Number(address.split(":")[1]);
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(header: Header, body?: Uint8Array): Promise<void> {
    await writeAll(this.conn, encodeFrame(header, body));
  }

  async hello(): Promise<Header> {
    await this.send({ op: "hello", version: PROTOCOL_VERSION });
    const head = await this.reader.readHead();
    assert.equal(head?.header.op, "hello");
    return head!.header;
  }

  async next(): Promise<Header | null> {
    const head = await this.reader.readHead();
    return head ? head.header : null;
  }

  /** Reads an error frame with this code, then expects the server to close. */
  async expectErrorAndClose(code: string): Promise<Header> {
    const header = await this.next();
    assert.equal(header?.op, "error", JSON.stringify(header));
    assert.equal(header?.code, code, JSON.stringify(header));
    assert.equal(typeof header?.message, "string");
    await this.expectClosed();
    return header!;
  }

  async expectClosed(): Promise<void> {
    try {
      assert.equal(await this.next(), null, "the server sent another frame instead of closing");
    } catch (error) {
      // A reset is a close too.
      assert.ok(error instanceof Deno.errors.ConnectionReset, String(error));
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

async function readBody(peer: Peer, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = await peer.reader.readBody(out.subarray(done, Math.min(length, done + 4099)));
    assert.ok(n > 0, "the body ended early");
    done += n;
  }
  assert.equal(peer.reader.bodyRemaining, 0);
  return out;
}

async function* chunksOf(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

const UNKNOWN_DIGEST = "0".repeat(64);

// --- handshake ---------------------------------------------------------------------

Deno.test("Server answers hello with its version, id and manifest generation", async () => {
  await withServer(async ({ address, dir }) => {
    await updateManifest(dir, (m) => void (m.files["a"] = fileEntry("a", [])));
    const client = await RawClient.connect(address);
    try {
      const hello = await client.hello();
      assert.deepEqual(hello, {
        op: "hello",
        version: PROTOCOL_VERSION,
        id: "test",
        generation: 1,
      });
      await client.send({ op: "ping" });
      assert.deepEqual(await client.next(), { op: "pong" });
    } finally {
      client.close();
    }
  });
});

Deno.test("Server requires hello first: another op gets VERSION_MISMATCH and a close", async () => {
  await withServer(async ({ address }) => {
    const client = await RawClient.connect(address);
    try {
      await client.send({ op: "ping" });
      await client.expectErrorAndClose("VERSION_MISMATCH");
    } finally {
      client.close();
    }
  });
});

Deno.test("Server refuses a hello of another protocol version with VERSION_MISMATCH", async () => {
  await withServer(async ({ address }) => {
    const client = await RawClient.connect(address);
    try {
      await client.send({ op: "hello", version: PROTOCOL_VERSION + 1 });
      const error = await client.expectErrorAndClose("VERSION_MISMATCH");
      assert.match(String(error.message), new RegExp(`version ${PROTOCOL_VERSION + 1}`));
    } finally {
      client.close();
    }
  });
});

// --- parts -------------------------------------------------------------------------

Deno.test("Server part.get returns the exact bytes of a stored part, whole and in ranges", async () => {
  await withServer(async ({ address, store, server }) => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    const digest = await storeBytes(store, bytes);
    const peer = await Peer.connect(address);
    try {
      const ranges: [number, number][] = [
        [0, bytes.length],
        [1000, 5000],
        [bytes.length - 1, 1],
        [1024 * 1024 - 3, 2 * 1024 * 1024 + 20],
        [bytes.length, 0],
      ];
      for (const [offset, length] of ranges) {
        await peer.requestPart(digest, offset, length);
        const got = await readBody(peer, length);
        assert.deepEqual(got, bytes.subarray(offset, offset + length), `${offset}+${length}`);
      }
      // The server counts a part after its last byte left; one more round trip settles that.
      await peer.ping();
      assert.equal(server.counters.partsServed, ranges.length);
      assert.equal(
        server.counters.bytesServed,
        ranges.reduce((sum, [, length]) => sum + length, 0),
      );
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server part.get beyond the end gets BAD_RANGE and the connection stays usable", async () => {
  await withServer(async ({ address, store }) => {
    const bytes = randomBytes(1000);
    const digest = await storeBytes(store, bytes);
    const peer = await Peer.connect(address);
    try {
      for (const [offset, length] of [[0, 1001], [1000, 1], [5000, 0], [999, 2]] as const) {
        await assert.rejects(peer.requestPart(digest, offset, length), assertCode("BAD_RANGE"));
      }
      await peer.ping();
      await peer.requestPart(digest, 10, 20);
      assert.deepEqual(await readBody(peer, 20), bytes.subarray(10, 30));
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server part.get of an unknown digest gets NOT_FOUND, of a quarantined one QUARANTINED", async () => {
  await withServer(async ({ address, store }) => {
    const digest = await storeBytes(store, randomBytes(100));
    await store.quarantine(digest);
    const peer = await Peer.connect(address);
    try {
      await assert.rejects(peer.requestPart(UNKNOWN_DIGEST, 0, 1), assertCode("NOT_FOUND"));
      await assert.rejects(peer.requestPart(digest, 0, 100), assertCode("QUARANTINED"));
      await peer.ping();
    } finally {
      peer.close();
    }
  });
});

/** Signs part.put for the unit server's cluster (it has no config, so no cluster.info). */
async function signer(dir: string): Promise<PartSigner> {
  return { identity: await copyIdentity(), cluster: await loadOrCreateClusterId(dir) };
}

Deno.test("Server part.put stores a part whose digest matches, once", async () => {
  await withServer(async ({ address, store, server, dir }) => {
    const bytes = randomBytes(700_000);
    const digest = sha256(bytes);
    const peer = await Peer.connect(address);
    try {
      assert.deepEqual(
        await peer.putPart(digest, bytes.length, chunksOf(bytes, 65_537), await signer(dir)),
        {
          stored: true,
        },
      );
      assert.equal(await store.verify(digest), true);
      // A second put of a part already held is read and dropped.
      assert.deepEqual(
        await peer.putPart(digest, bytes.length, chunksOf(bytes, 100_000), await signer(dir)),
        {
          stored: false,
        },
      );
      assert.equal(server.counters.partsStored, 1);
      await peer.requestPart(digest, 0, bytes.length);
      assert.deepEqual(await readBody(peer, bytes.length), bytes);
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server part.put with the wrong digest gets DIGEST_MISMATCH and stores nothing", async () => {
  await withServer(async ({ address, store, dir }) => {
    const bytes = randomBytes(50_000);
    const claimed = sha256(randomBytes(10));
    const peer = await Peer.connect(address);
    try {
      await assert.rejects(
        peer.putPart(claimed, bytes.length, chunksOf(bytes, 8192), await signer(dir)),
        assertCode("DIGEST_MISMATCH"),
      );
      assert.deepEqual(await store.list(), []);
      assert.deepEqual([...Deno.readDirSync(store.tmpDir)], []);
      // The body was consumed: the stream is intact and the connection goes on.
      await peer.ping();
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server part.report quarantines a damaged copy and keeps a good one", async () => {
  await withServer(async ({ address, store, server }) => {
    const good = await storeBytes(store, randomBytes(2000));
    const bad = await storeBytes(store, randomBytes(2000));
    await Deno.writeFile(store.pathOf(bad), randomBytes(2000));
    const peer = await Peer.connect(address);
    try {
      assert.equal(await peer.report(good), false);
      assert.equal(await peer.report(bad), true);
      assert.equal(await peer.report(UNKNOWN_DIGEST), false);
      await assert.rejects(peer.requestPart(bad, 0, 1), assertCode("QUARANTINED"));
      assert.equal(await store.verify(good), true);
      assert.equal(server.counters.reportsReceived, 3);
      assert.equal(server.counters.quarantined, 1);
    } finally {
      peer.close();
    }
  });
});

// --- files and stats ---------------------------------------------------------------

function fileEntry(name: string, parts: { digest: string; size: number }[]): FileEntry {
  const size = parts.reduce((sum, p) => sum + p.size, 0);
  const list = parts.map((p, i) => ({ ...p, replicas: [String(9001 + i), String(9101 + i)] }));
  return {
    name,
    size,
    partSize: parts[0]?.size ?? 4096,
    contentId: contentIdOf(size, list),
    owner: "operator",
    created: "2024-01-01T00:00:00.000Z",
    parts: list,
  };
}

Deno.test("Server file.lookup answers names in order, null for a missing one, and stops at its budget", async () => {
  await withServer(async ({ address, dir }) => {
    // Entries of about 2.3 MB of JSON (20,000 parts): a reply passes
    // LOOKUP_REPLY_BUDGET_BYTES with the second and leaves out the third.
    const big = (name: string, seed: number) =>
      fileEntry(
        name,
        Array.from({ length: 20_000 }, (_, i) => ({
          digest: (seed * 1_000_000 + i).toString(16).padStart(64, "0"),
          size: 4096,
        })),
      );
    const [a, b, c] = [big("a.bin", 1), big("b.bin", 2), big("c.bin", 3)];
    await updateManifest(
      dir,
      (m) => void Object.assign(m.files, { "a.bin": a, "b.bin": b, "c.bin": c }),
    );
    const peer = await Peer.connect(address);
    try {
      const first = await peer.lookupFiles(["a.bin", "missing.bin", "b.bin", "c.bin"]);
      assert.deepEqual([...first.keys()], ["a.bin", "missing.bin", "b.bin"]);
      assert.deepEqual(first.get("a.bin")?.entry, a);
      assert.equal(first.get("missing.bin"), undefined);
      assert.deepEqual(first.get("b.bin")?.entry, b);
      const rest = await peer.lookupFiles(["c.bin"]);
      assert.deepEqual(rest.get("c.bin")?.entry, c);
      assert.equal(rest.get("c.bin")?.instances["9001"], "127.0.0.1:9001");
      await assert.rejects(peer.lookupFiles([]), assertCode("BAD_REQUEST"));
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server file.get returns the entry and replica addresses; NOT_FOUND otherwise", async () => {
  await withServer(async ({ address, dir }) => {
    const entry = fileEntry("ünï.bin", [
      { digest: "a".repeat(64), size: 4096 },
      { digest: "b".repeat(64), size: 100 },
    ]);
    await updateManifest(dir, (m) => void (m.files[entry.name] = entry));
    const peer = await Peer.connect(address);
    try {
      const info = await peer.getFile(entry.name);
      assert.deepEqual(info.entry, entry);
      assert.equal(info.generation, 1);
      assert.deepEqual(info.instances, {
        "9001": "127.0.0.1:9001",
        "9101": "127.0.0.1:9101",
        "9002": "127.0.0.1:9002",
        "9102": "127.0.0.1:9102",
      });
      await assert.rejects(peer.getFile("missing.bin"), assertCode("NOT_FOUND"));
      await assert.rejects(peer.getFile("__proto__"), assertCode("NOT_FOUND"));
      assert.deepEqual(await peer.listFiles(), [{
        name: entry.name,
        size: entry.size,
        parts: 2,
        owner: "operator",
        created: entry.created,
      }]);
    } finally {
      peer.close();
    }
  });
});

Deno.test("Server file.list in pages: 2,500 files come back whole, in name order; bad limits refused", async () => {
  await withServer(async ({ address, dir }) => {
    const names = Array.from({ length: 2500 }, (_, i) => `f${String(i).padStart(5, "0")}.bin`);
    const store = openManifestStore(dir);
    for (let i = 0; i < names.length; i += 500) {
      await putEntries(store, ...names.slice(i, i + 500).map((name, k) => testEntry(name, i + k)));
    }
    const peer = await Peer.connect(address);
    try {
      // Pages of at most MAX_SERVED_LIST_PAGE: every name once, in order.
      assert.deepEqual((await peer.listFiles()).map((f) => f.name), names);
      // Asked for MAX_LIST_PAGE_FILES, the instance serves its own page size and says there is more.
      for await (const page of peer.filePages()) {
        assert.deepEqual(page.files.map((f) => f.name), names.slice(0, MAX_SERVED_LIST_PAGE));
        assert.equal(page.more, true);
        break;
      }
      const page = await peer.request({ op: "file.list", limit: 10, after: names[2489]! });
      assert.equal(page.op, "files");
      assert.equal(page.more, false);
    } finally {
      peer.close();
    }
    // BAD_REQUEST closes the connection: one connection each.
    for (const limit of [0, MAX_LIST_PAGE_FILES + 1]) {
      const bad = await Peer.connect(address);
      try {
        await assert.rejects(bad.request({ op: "file.list", limit }), assertCode("BAD_REQUEST"));
      } finally {
        bad.close();
      }
    }
  });
});

Deno.test("Server stats reports its id and counters", async () => {
  await withServer(async ({ address }) => {
    const peer = await Peer.connect(address);
    try {
      await peer.ping();
      const stats = await peer.stats();
      assert.equal(stats.op, "stats");
      assert.equal(stats.id, "test");
      assert.equal(stats.requests, 3);
      assert.equal(stats.activeConnections, 1);
      assert.equal(typeof stats.uptimeMs, "number");
    } finally {
      peer.close();
    }
  });
});

// --- bad frames --------------------------------------------------------------------

Deno.test("Server answers an unknown op with UNKNOWN_OP and a close, and keeps serving others", async () => {
  await withServer(async ({ address, server }) => {
    const other = await Peer.connect(address);
    const client = await RawClient.connect(address);
    try {
      await client.hello();
      await client.send({ op: "part.delete", digest: UNKNOWN_DIGEST });
      await client.expectErrorAndClose("UNKNOWN_OP");
      await other.ping();
      assert.equal(server.counters.activeConnections, 1);
    } finally {
      client.close();
      other.close();
    }
  });
});

Deno.test("Server answers a declared header over MAX_HEADER_BYTES with HEADER_TOO_LARGE and a close", async () => {
  await withServer(async ({ address }) => {
    const other = await Peer.connect(address);
    const client = await RawClient.connect(address);
    try {
      await client.hello();
      const prefix = new Uint8Array(PREFIX_BYTES);
      new DataView(prefix.buffer).setUint32(0, MAX_HEADER_BYTES + 1);
      await writeAll(client.conn, prefix);
      await client.expectErrorAndClose("HEADER_TOO_LARGE");
      await other.ping();
    } finally {
      client.close();
      other.close();
    }
  });
});

Deno.test("Server answers a declared body over MAX_BODY_BYTES with BODY_TOO_LARGE and a close", async () => {
  await withServer(async ({ address }) => {
    const client = await RawClient.connect(address);
    try {
      await client.hello();
      const header = new TextEncoder().encode(JSON.stringify({ op: "part.put" }));
      const prefix = new Uint8Array(PREFIX_BYTES);
      const view = new DataView(prefix.buffer);
      view.setUint32(0, header.length);
      view.setBigUint64(4, 2n ** 40n);
      await writeAll(client.conn, prefix);
      await writeAll(client.conn, header);
      await client.expectErrorAndClose("BODY_TOO_LARGE");
    } finally {
      client.close();
    }
  });
});

Deno.test("Server answers a header that is not JSON with BAD_FRAME and a close", async () => {
  await withServer(async ({ address }) => {
    const client = await RawClient.connect(address);
    try {
      const header = new TextEncoder().encode("{hello");
      const prefix = new Uint8Array(PREFIX_BYTES);
      new DataView(prefix.buffer).setUint32(0, header.length);
      await writeAll(client.conn, prefix);
      await writeAll(client.conn, header);
      await client.expectErrorAndClose("BAD_FRAME");
    } finally {
      client.close();
    }
  });
});

Deno.test("Server answers bad fields or a body on a body-less op with BAD_REQUEST and a close", async () => {
  await withServer(async ({ address }) => {
    const cases: [Header, Uint8Array | undefined][] = [
      [{ op: "part.get", digest: UNKNOWN_DIGEST, offset: -1, length: 1 }, undefined],
      [{ op: "part.get", digest: "../../etc/passwd", offset: 0, length: 1 }, undefined],
      [{ op: "ping" }, new Uint8Array(10)],
    ];
    for (const [header, body] of cases) {
      const client = await RawClient.connect(address);
      try {
        await client.hello();
        await client.send(header, body);
        await client.expectErrorAndClose("BAD_REQUEST");
      } finally {
        client.close();
      }
    }
  });
});

Deno.test("Server bounds the error message for a huge file name", async () => {
  await withServer(async ({ address }) => {
    const peer = await Peer.connect(address);
    try {
      // Each quote is escaped twice on its way into an error header.
      await assert.rejects(peer.getFile('"'.repeat(30_000)), assertCode("NOT_FOUND"));
      await peer.ping();
    } finally {
      peer.close();
    }
  });
});

// --- limits ------------------------------------------------------------------------

Deno.test("Server closes a connection that stays silent past idleTimeoutMs", async () => {
  await withServer(async ({ address, server }) => {
    const client = await RawClient.connect(address);
    try {
      await client.hello();
      const header = await client.next();
      if (header !== null) {
        assert.equal(header.op, "error");
        assert.equal(header.code, "TIMEOUT");
        await client.expectClosed();
      }
      // The handler finishes its bookkeeping just after the close reached us.
      for (let i = 0; server.counters.activeConnections > 0; i++) {
        assert.ok(i < 200, "the timed-out connection is still counted as active");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      client.close();
    }
  }, { idleTimeoutMs: 100 });
});

Deno.test("Server closes a connection that does not read its reply within idleTimeoutMs", async () => {
  await withTempDir("fts-unit-server-", async (dir) => {
    await updateManifest(dir, (m) => void (m.files["a"] = fileEntry("a", [])));
    const store = new PartStore(join(dir, "instances", "test"));
    await store.init();
    const server = new Server({
      id: "test",
      store,
      manifest: openManifestStore(dir),
      addressOf: (id) => `127.0.0.1:${id}`,
      limits: { idleTimeoutMs: 200 },
    });
    // A client that sends hello and file.list, takes the hello reply, then reads
    // nothing more: every later write blocks, as on a socket whose buffers are full.
    const requests = concat(
      encodeFrame({ op: "hello", version: PROTOCOL_VERSION }),
      encodeFrame({ op: "file.list" }),
    );
    let closed = false;
    const onClose = Promise.withResolvers<void>();
    let writes = 0;
    let delivered = false;
    const conn = {
      read: async (buffer: Uint8Array): Promise<number | null> => {
        if (!delivered) {
          delivered = true;
          buffer.set(requests);
          return requests.length;
        }
        await onClose.promise;
        throw new Deno.errors.BadResource("closed");
      },
      write: async (bytes: Uint8Array): Promise<number> => {
        if (writes++ === 0) return bytes.length;
        await onClose.promise;
        throw new Deno.errors.BadResource("closed");
      },
      close: () => {
        closed = true;
        onClose.resolve();
      },
    };
    let guard: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<"stuck">((resolve) => (guard = setTimeout(resolve, 20_000, "stuck")));
    try {
      const outcome = await Promise.race([server.handle(conn), stuck]);
      assert.notEqual(outcome, "stuck", "the handler still waits on a reply nobody reads");
      assert.ok(closed, "the connection was not closed");
      assert.equal(server.counters.activeConnections, 0);
    } finally {
      clearTimeout(guard);
      conn.close();
    }
  });
});

Deno.test("Server refuses connections over maxConnections with BUSY", async () => {
  await withServer(async ({ address, server }) => {
    const first = await Peer.connect(address);
    const second = await RawClient.connect(address);
    try {
      await second.expectErrorAndClose("BUSY");
      assert.equal(server.counters.refusedConnections, 1);
      await first.ping();
    } finally {
      second.close();
      first.close();
    }
    // Once the first leaves, its slot is free again.
    let third: Peer | undefined;
    for (let attempt = 0; !third; attempt++) {
      try {
        third = await Peer.connect(address);
      } catch (error) {
        assertCode("BUSY")(error);
        assert.ok(attempt < 100, "the slot of a closed connection was never freed");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    await third.ping();
    third.close();
  }, { maxConnections: 1 });
});
