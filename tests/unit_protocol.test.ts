/**
 * Unit tests of lib/wire/frame.ts and lib/wire/ops.ts: framing, limits, FrameReader over scripted
 * byte sources, timeouts and request parsing.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../lib/wire/errors.ts";
import {
  type ByteSource,
  decodeHeader,
  decodePrefix,
  encodeFrame,
  encodeFrameHead,
  errorFromHeader,
  errorHeader,
  FrameReader,
  type Header,
  MAX_BODY_BYTES,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_HEADER_BYTES,
  MAX_JSON_BODY_BYTES,
  PREFIX_BYTES,
  ReadTimeoutError,
  writeAll,
} from "../lib/wire/frame.ts";
import { parseRequest } from "../lib/wire/ops.ts";
import { assertCode, concat } from "./unit_helpers.ts";

const DIGEST = "ab".repeat(32);

/** Delivers a fixed byte string in chunks of the scripted sizes (cycled), then EOF. */
class ScriptedSource implements ByteSource {
  readonly #bytes: Uint8Array;
  readonly #chunks: number[];
  #position = 0;
  #turn = 0;
  reads = 0;

  constructor(bytes: Uint8Array, chunks: number[] = [1 << 30]) {
    this.#bytes = bytes;
    this.#chunks = chunks;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    this.reads++;
    if (this.#position >= this.#bytes.length) return Promise.resolve(null);
    const chunk = this.#chunks[this.#turn++ % this.#chunks.length]!;
    const n = Math.min(chunk, buffer.length, this.#bytes.length - this.#position);
    buffer.set(this.#bytes.subarray(this.#position, this.#position + n));
    this.#position += n;
    return Promise.resolve(n);
  }
}

/** A source whose reads never complete, like a peer that went silent. */
class SilentSource implements ByteSource {
  read(): Promise<number | null> {
    return new Promise(() => {});
  }
}

function patternBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

/** A raw prefix with any lengths, including ones encodeFrameHead refuses to produce. */
function rawPrefix(headerLength: number, bodyLength: bigint): Uint8Array {
  const out = new Uint8Array(PREFIX_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLength);
  view.setBigUint64(4, bodyLength);
  return out;
}

function rawFrame(headerText: string, body = new Uint8Array()): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  return concat(rawPrefix(header.length, BigInt(body.length)), header, body);
}

async function readAllBody(reader: FrameReader, chunkBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(chunkBytes);
  while (true) {
    const n = await reader.readBody(buffer);
    if (n === 0) break;
    assert.ok(n <= chunkBytes);
    parts.push(buffer.slice(0, n));
  }
  return concat(...parts);
}

// --- encoding and prefix/header decoding -------------------------------------

Deno.test("encodeFrame() lays out u32 header length, u64 body length, header, body", () => {
  const body = patternBytes(5);
  const frame = encodeFrame({ op: "ping" }, body);
  const headerJson = new TextEncoder().encode(JSON.stringify({ op: "ping" }));
  const view = new DataView(frame.buffer);
  assert.equal(view.getUint32(0), headerJson.length);
  assert.equal(view.getBigUint64(4), 5n);
  assert.deepEqual(frame.subarray(PREFIX_BYTES, PREFIX_BYTES + headerJson.length), headerJson);
  assert.deepEqual(frame.subarray(PREFIX_BYTES + headerJson.length), body);
  assert.equal(frame.length, PREFIX_BYTES + headerJson.length + 5);
});

Deno.test("encodeFrame() and decodePrefix()/decodeHeader() round trip", () => {
  const header: Header = { op: "part.get", digest: DIGEST, offset: 7, length: 99, note: "é✓" };
  const frame = encodeFrame(header, patternBytes(3));
  const { headerLength, bodyLength } = decodePrefix(frame.subarray(0, PREFIX_BYTES));
  assert.equal(bodyLength, 3);
  const decoded = decodeHeader(frame.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength));
  assert.deepEqual(decoded, header);
});

Deno.test("encodeFrameHead() declares the body length without carrying the body", () => {
  const head = encodeFrameHead({ op: "data" }, 123_456);
  assert.equal(decodePrefix(head).bodyLength, 123_456);
  assert.equal(head.length, PREFIX_BYTES + JSON.stringify({ op: "data" }).length);
});

Deno.test("encodeFrameHead() rejects a body length outside 0..MAX_BODY_BYTES", () => {
  for (const bad of [-1, 1.5, NaN, MAX_BODY_BYTES + 1]) {
    assert.throws(() => encodeFrameHead({ op: "data" }, bad), RangeError, String(bad));
  }
  assert.equal(
    decodePrefix(encodeFrameHead({ op: "data" }, MAX_BODY_BYTES)).bodyLength,
    MAX_BODY_BYTES,
  );
});

Deno.test("encodeFrameHead() rejects a header over MAX_HEADER_BYTES", () => {
  const filler = "x".repeat(MAX_HEADER_BYTES);
  assert.throws(() => encodeFrameHead({ op: "ping", filler }), RangeError);
});

Deno.test("decodePrefix() rejects a header over MAX_HEADER_BYTES", () => {
  assert.throws(
    () => decodePrefix(rawPrefix(MAX_HEADER_BYTES + 1, 0n)),
    assertCode("HEADER_TOO_LARGE"),
  );
  assert.throws(() => decodePrefix(rawPrefix(0xffffffff, 0n)), assertCode("HEADER_TOO_LARGE"));
  assert.equal(decodePrefix(rawPrefix(MAX_HEADER_BYTES, 0n)).headerLength, MAX_HEADER_BYTES);
});

Deno.test("decodePrefix() rejects a body over MAX_BODY_BYTES", () => {
  assert.throws(
    () => decodePrefix(rawPrefix(10, BigInt(MAX_BODY_BYTES) + 1n)),
    assertCode("BODY_TOO_LARGE"),
  );
  assert.throws(() => decodePrefix(rawPrefix(10, 2n ** 64n - 1n)), assertCode("BODY_TOO_LARGE"));
});

Deno.test("decodePrefix() rejects an empty header and a truncated prefix", () => {
  assert.throws(() => decodePrefix(rawPrefix(0, 0n)), assertCode("BAD_FRAME"));
  assert.throws(() => decodePrefix(new Uint8Array(PREFIX_BYTES - 1)), assertCode("BAD_FRAME"));
});

Deno.test("decodeHeader() rejects bad JSON and bad UTF-8", () => {
  const encoder = new TextEncoder();
  assert.throws(() => decodeHeader(encoder.encode("{op:")), assertCode("BAD_FRAME"));
  assert.throws(() => decodeHeader(encoder.encode("")), assertCode("BAD_FRAME"));
  const badUtf8 = concat(
    encoder.encode('{"op":"'),
    new Uint8Array([0xff, 0xfe]),
    encoder.encode('"}'),
  );
  assert.throws(() => decodeHeader(badUtf8), assertCode("BAD_FRAME"));
});

Deno.test("decodeHeader() rejects a header that is not a JSON object", () => {
  for (const text of ["[]", '["op"]', "null", "42", '"ping"', "true"]) {
    assert.throws(
      () => decodeHeader(new TextEncoder().encode(text)),
      assertCode("BAD_FRAME"),
      text,
    );
  }
});

Deno.test("decodeHeader() rejects a header with a missing, empty or non-string op", () => {
  for (const text of ["{}", '{"op":""}', '{"op":7}', '{"op":null}', '{"OP":"ping"}']) {
    assert.throws(
      () => decodeHeader(new TextEncoder().encode(text)),
      assertCode("BAD_FRAME"),
      text,
    );
  }
});

// --- FrameReader ---------------------------------------------------------------

const FRAMES: { header: Header; body: Uint8Array }[] = [
  { header: { op: "hello", version: 1 }, body: new Uint8Array() },
  { header: { op: "data", digest: DIGEST, offset: 0, length: 1000 }, body: patternBytes(1000, 2) },
  { header: { op: "ping" }, body: new Uint8Array() },
  { header: { op: "files", names: ["ünï", "b"] }, body: patternBytes(77, 3) },
];
const STREAM = concat(...FRAMES.map((f) => encodeFrame(f.header, f.body)));

for (
  const [label, chunks] of [
    ["one byte at a time", [1]],
    ["in odd chunks", [3, 1, 7, 13, 2, 101, 5]],
    ["all at once", [1 << 30]],
  ] as const
) {
  Deno.test(`FrameReader reads frames delivered ${label}`, async () => {
    const reader = new FrameReader(new ScriptedSource(STREAM, [...chunks]));
    for (const frame of FRAMES) {
      const head = await reader.readHead();
      assert.ok(head);
      assert.deepEqual(head.header, frame.header);
      assert.equal(head.bodyLength, frame.body.length);
      assert.deepEqual(await readAllBody(reader, 7), frame.body);
    }
    assert.equal(await reader.readHead(), null);
    assert.equal(reader.bytesRead, STREAM.length);
  });
}

Deno.test("FrameReader.readBody() streams the body into small caller buffers", async () => {
  const body = patternBytes(10_000, 9);
  const reader = new FrameReader(
    new ScriptedSource(encodeFrame({ op: "data" }, body), [4096, 3, 999]),
    { bufferBytes: 256 },
  );
  const head = await reader.readHead();
  assert.equal(head?.bodyLength, body.length);
  const received: Uint8Array[] = [];
  const buffer = new Uint8Array(13);
  let n: number;
  while ((n = await reader.readBody(buffer)) > 0) {
    received.push(buffer.slice(0, n));
    assert.equal(reader.bodyRemaining, body.length - received.reduce((s, r) => s + r.length, 0));
  }
  assert.deepEqual(concat(...received), body);
  assert.equal(await reader.readBody(buffer), 0);
});

Deno.test("FrameReader.readHead() skips the unread body of the previous frame", async () => {
  const reader = new FrameReader(new ScriptedSource(STREAM, [5, 11]));
  await reader.readHead(); // hello
  const data = await reader.readHead();
  assert.equal(data?.header.op, "data");
  assert.ok((await reader.readBody(new Uint8Array(10))) > 0);
  // The rest of the 1000-byte data body is unread; the next readHead discards it.
  const ping = await reader.readHead();
  assert.deepEqual(ping?.header, { op: "ping" });
});

Deno.test("FrameReader reads a header larger than its buffer", async () => {
  const header = { op: "file.get", name: "n".repeat(5000) };
  const reader = new FrameReader(new ScriptedSource(encodeFrame(header), [17]), {
    bufferBytes: 64,
  });
  assert.deepEqual((await reader.readHead())?.header, header);
  assert.equal(await reader.readHead(), null);
});

Deno.test("FrameReader reads a header of exactly MAX_HEADER_BYTES", async () => {
  const skeleton = JSON.stringify({ op: "ping", pad: "" }).length;
  const header = { op: "ping", pad: "p".repeat(MAX_HEADER_BYTES - skeleton) };
  const frame = encodeFrame(header);
  assert.equal(frame.length, PREFIX_BYTES + MAX_HEADER_BYTES);
  const reader = new FrameReader(new ScriptedSource(frame, [1000, 1]));
  assert.deepEqual((await reader.readHead())?.header, header);
});

Deno.test("FrameReader.readHead() rejects a declared header over MAX_HEADER_BYTES before reading it", async () => {
  const source = new ScriptedSource(
    concat(rawPrefix(MAX_HEADER_BYTES + 1, 0n), new Uint8Array(MAX_HEADER_BYTES + 1)),
    [PREFIX_BYTES],
  );
  const reader = new FrameReader(source);
  await assert.rejects(reader.readHead(), assertCode("HEADER_TOO_LARGE"));
  assert.equal(reader.bytesRead, PREFIX_BYTES);
});

Deno.test("FrameReader.readHead() rejects bad JSON, non-object and op-less headers", async () => {
  for (const text of ["{not json", "[1,2]", '{"digest":"x"}']) {
    const reader = new FrameReader(new ScriptedSource(rawFrame(text)));
    await assert.rejects(reader.readHead(), assertCode("BAD_FRAME"), text);
  }
});

Deno.test("FrameReader.readHead() returns null on a clean end between frames", async () => {
  assert.equal(await new FrameReader(new ScriptedSource(new Uint8Array())).readHead(), null);
});

Deno.test("FrameReader rejects a stream that ends inside the prefix, header or body", async () => {
  const frame = encodeFrame({ op: "data" }, patternBytes(50));
  for (const cut of [3, PREFIX_BYTES + 2, frame.length - 10]) {
    const reader = new FrameReader(new ScriptedSource(frame.subarray(0, cut), [4]));
    const attempt = async () => {
      await reader.readHead();
      await readAllBody(reader, 8);
    };
    await assert.rejects(attempt(), assertCode("BAD_FRAME"), `cut at ${cut}`);
  }
});

Deno.test("FrameReader.readBodyBytes() refuses a body over its limit", async () => {
  const reader = new FrameReader(
    new ScriptedSource(encodeFrame({ op: "files" }, patternBytes(100))),
  );
  await reader.readHead();
  await assert.rejects(reader.readBodyBytes(99), assertCode("BODY_TOO_LARGE"));
  assert.ok(MAX_JSON_BODY_BYTES <= MAX_BODY_BYTES);
});

Deno.test("FrameReader.readBodyJson() parses a JSON body and rejects a bad one", async () => {
  const good = encodeFrame({ op: "files" }, new TextEncoder().encode('[{"name":"a"}]'));
  const bad = encodeFrame({ op: "files" }, new TextEncoder().encode("[{"));
  const reader = new FrameReader(new ScriptedSource(concat(good, bad), [3]));
  await reader.readHead();
  assert.deepEqual(await reader.readBodyJson(), [{ name: "a" }]);
  await reader.readHead();
  await assert.rejects(reader.readBodyJson(), assertCode("BAD_FRAME"));
});

Deno.test("FrameReader throws ReadTimeoutError when the source never answers", async () => {
  let aborted = 0;
  const reader = new FrameReader(new SilentSource(), { timeoutMs: 30 });
  reader.onTimeout = () => aborted++;
  await assert.rejects(reader.readHead(), (error: unknown) => {
    assert.ok(error instanceof ReadTimeoutError);
    assert.equal(error.code, "TIMEOUT");
    assert.match(error.message, /30 ms/);
    return true;
  });
  assert.equal(aborted, 1);
});

Deno.test("FrameReader times out in the middle of a body too", async () => {
  const frame = encodeFrame({ op: "data" }, patternBytes(100));
  const partial = frame.subarray(0, frame.length - 40);
  let served = false;
  // Gives the first 60 body bytes, then goes silent.
  const source: ByteSource = {
    read(buffer) {
      if (served) return new Promise(() => {});
      served = true;
      buffer.set(partial);
      return Promise.resolve(partial.length);
    },
  };
  const reader = new FrameReader(source, { timeoutMs: 30 });
  await reader.readHead();
  await assert.rejects(readAllBody(reader, 16), ReadTimeoutError);
  assert.equal(reader.bodyRemaining, 40);
});

Deno.test("writeAll() loops over short writes", async () => {
  const written: number[] = [];
  const sink = {
    write(bytes: Uint8Array): Promise<number> {
      const n = Math.min(3, bytes.length);
      written.push(...bytes.subarray(0, n));
      return Promise.resolve(n);
    },
  };
  const bytes = patternBytes(20);
  await writeAll(sink, bytes);
  assert.deepEqual(new Uint8Array(written), bytes);
});

// --- requests and error frames ------------------------------------------------

/** A part.put's auth as parsed: only its shape is checked here. */
const PUT_AUTH = { key: "ed25519:k", timestamp: 1, signature: "s" };

Deno.test("parseRequest() accepts every op with good fields", () => {
  const good: Header[] = [
    { op: "hello", version: 1 },
    { op: "hello", version: 1, agent: "fts/0.1" },
    { op: "ping" },
    { op: "file.get", name: "a.bin" },
    { op: "file.list" },
    { op: "part.get", digest: DIGEST, offset: 0, length: 0 },
    { op: "part.get", digest: DIGEST, offset: 4096, length: 8 * 1024 * 1024 },
    { op: "part.put", digest: DIGEST, cluster: "c", auth: PUT_AUTH },
    { op: "part.put", digest: DIGEST },
    { op: "part.report", digest: DIGEST },
    { op: "stats" },
  ];
  for (const header of good) assert.deepEqual(parseRequest(header), header);
});

Deno.test("parseRequest() drops unknown fields and trims a long agent", () => {
  assert.deepEqual(parseRequest({ op: "ping", extra: 1 }), { op: "ping" });
  const hello = parseRequest({ op: "hello", version: 1, agent: "a".repeat(1000) });
  assert.equal(hello.op === "hello" && hello.agent?.length, 200);
  assert.deepEqual(parseRequest({ op: "hello", version: 1, agent: 5 }), {
    op: "hello",
    version: 1,
  });
});

Deno.test("parseRequest() rejects an unknown op with UNKNOWN_OP", () => {
  for (const op of ["PING", "part.delete", "data", "error", "x".repeat(500)]) {
    assert.throws(() => parseRequest({ op }), (error: unknown) => {
      assertCode("UNKNOWN_OP")(error);
      // The echoed op is bounded, whatever the client sent.
      assert.ok((error as Error).message.length < 100);
      return true;
    });
  }
});

Deno.test("parseRequest() rejects bad fields with BAD_REQUEST", () => {
  const bad: Header[] = [
    { op: "hello" },
    { op: "hello", version: "1" },
    { op: "hello", version: -1 },
    { op: "file.get" },
    { op: "file.get", name: 5 },
    { op: "part.get", digest: DIGEST, offset: -1, length: 10 },
    { op: "part.get", digest: DIGEST, offset: 0, length: -10 },
    { op: "part.get", digest: DIGEST, offset: 1.5, length: 10 },
    { op: "part.get", digest: DIGEST, offset: "0", length: 10 },
    { op: "part.get", digest: DIGEST, offset: 2 ** 53, length: 10 },
    { op: "part.get", digest: DIGEST, length: 10 },
    { op: "part.get", digest: DIGEST, offset: 0 },
    { op: "part.get", digest: "zz".repeat(32), offset: 0, length: 1 },
    { op: "part.get", digest: DIGEST.toUpperCase(), offset: 0, length: 1 },
    { op: "part.get", digest: DIGEST.slice(1), offset: 0, length: 1 },
    { op: "part.get", digest: "../" + DIGEST.slice(3), offset: 0, length: 1 },
    { op: "part.put", digest: DIGEST + "0", cluster: "c", auth: PUT_AUTH },
    { op: "part.put" },
    { op: "part.put", digest: DIGEST, cluster: 5 },
    { op: "part.put", digest: DIGEST, cluster: "c", auth: { ...PUT_AUTH, signature: "" } },
    { op: "part.report", digest: 42 },
  ];
  for (const header of bad) {
    assert.throws(() => parseRequest(header), assertCode("BAD_REQUEST"), JSON.stringify(header));
  }
});

Deno.test("errorHeader() and errorFromHeader() carry a catalogued code across the wire", () => {
  const header = errorHeader(new ProtocolError("NOT_FOUND", 'No file named "x"'));
  assert.deepEqual(header, { op: "error", code: "NOT_FOUND", message: 'No file named "x"' });
  const back = errorFromHeader(decodeHeader(encodeFrame(header).subarray(PREFIX_BYTES)));
  assert.equal(back.code, "NOT_FOUND");
  assert.equal(back.message, 'No file named "x"');
});

Deno.test("errorHeader() bounds a long message so the error frame always fits", () => {
  // A message quoting client input: every quote is escaped again in the header JSON.
  const name = JSON.stringify('"'.repeat(MAX_HEADER_BYTES));
  const header = errorHeader(new ProtocolError("NOT_FOUND", `No file named ${name}`));
  assert.equal(header.code, "NOT_FOUND");
  assert.equal((header.message as string).length, MAX_ERROR_MESSAGE_CHARS);
  assert.ok((header.message as string).startsWith("No file named "));
  assert.ok(encodeFrame(header).length < MAX_HEADER_BYTES);
});

Deno.test("errorHeader() hides the details of an unexpected error", () => {
  const header = errorHeader(new Error("EACCES /secret/path"));
  assert.deepEqual(header, { op: "error", code: "INTERNAL", message: "Internal server error" });
});

Deno.test("errorFromHeader() maps an unknown code to INTERNAL", () => {
  const error = errorFromHeader({ op: "error", code: "SOMETHING_NEW", message: "m" });
  assert.equal(error.code, "INTERNAL");
  assert.equal(errorFromHeader({ op: "error" }).message, "Unknown error");
});
