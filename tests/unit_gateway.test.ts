/**
 * The gateway's pure pieces: Range parsing, validators, the request head
 * parser, the part budget, Content-Disposition and the Metalink document.
 */
import assert from "node:assert/strict";
import { parseByteRange } from "../lib/gateway/byte_range.ts";
import { contentDisposition, mediaTypeOf } from "../lib/gateway/content_headers.ts";
import { isWildcardAddress } from "../lib/wire/host_address.ts";
import { BadRequestError, parseRequestHead, readRequestHead } from "../lib/gateway/http_request.ts";
import { metalinkDocument } from "../lib/gateway/metalink.ts";
import { PartBudget } from "../lib/gateway/part_budget.ts";
import { VerifiedParts } from "../lib/gateway/verified_parts.ts";
import type { PartReader } from "../lib/client/part_reader.ts";
import { evaluatePreconditions, ifRangeHolds } from "../lib/gateway/preconditions.ts";
import type { FileEntry } from "../lib/state/manifest.ts";

Deno.test("parseByteRange() serves one range, 416s unsatisfiable ones, whole file otherwise", () => {
  const size = 1000;
  const cases: [string | undefined, ReturnType<typeof parseByteRange>][] = [
    [undefined, { kind: "whole" }],
    ["bytes=0-99", { kind: "range", start: 0, end: 100 }],
    ["bytes=990-", { kind: "range", start: 990, end: 1000 }],
    ["bytes=-10", { kind: "range", start: 990, end: 1000 }],
    ["bytes=-5000", { kind: "range", start: 0, end: 1000 }],
    ["bytes=500-99999999999999999999", { kind: "range", start: 500, end: 1000 }],
    ["BYTES = 1-2", { kind: "range", start: 1, end: 3 }],
    ["bytes=1000-", { kind: "unsatisfiable" }],
    ["bytes=99999999999999999999-", { kind: "unsatisfiable" }],
    ["bytes=-0", { kind: "unsatisfiable" }],
    ["bytes=5-2", { kind: "whole" }],
    ["bytes=0-1,3-4", { kind: "whole" }],
    ["bytes=a-b", { kind: "whole" }],
    ["bytes=-", { kind: "whole" }],
    ["bytes=1.5-2", { kind: "whole" }],
    ["items=0-1", { kind: "whole" }],
  ];
  for (const [header, expected] of cases) {
    assert.deepEqual(parseByteRange(header, size), expected, header);
  }
  assert.deepEqual(parseByteRange("bytes=0-", 0), { kind: "unsatisfiable" });
  // RFC 9110 section 14.1.1: an empty file satisfies a suffix range, with no bytes: all of it.
  assert.deepEqual(parseByteRange("bytes=-1", 0), { kind: "whole" });
  assert.deepEqual(parseByteRange("bytes=-0", 0), { kind: "unsatisfiable" });
  const big = 5 * 2 ** 30;
  assert.deepEqual(parseByteRange(`bytes=${2 ** 32}-${2 ** 32 + 9}`, big), {
    kind: "range",
    start: 2 ** 32,
    end: 2 ** 32 + 10,
  });
});

Deno.test("evaluatePreconditions() and ifRangeHolds() follow RFC 9110's order and comparisons", () => {
  const v = { etag: '"abc"', lastModified: "Sun, 06 Dec 2026 09:00:00 GMT" };
  const h = (pairs: Record<string, string>) => new Map(Object.entries(pairs));
  assert.equal(evaluatePreconditions(h({}), v), "proceed");
  assert.equal(evaluatePreconditions(h({ "if-match": '"x", "abc"' }), v), "proceed");
  assert.equal(evaluatePreconditions(h({ "if-match": "*" }), v), "proceed");
  assert.equal(evaluatePreconditions(h({ "if-match": 'W/"abc"' }), v), "failed");
  assert.equal(evaluatePreconditions(h({ "if-match": '"x"' }), v), "failed");
  assert.equal(evaluatePreconditions(h({ "if-none-match": 'W/"abc"' }), v), "not-modified");
  assert.equal(evaluatePreconditions(h({ "if-none-match": '"x"' }), v), "proceed");
  // If-None-Match wins over If-Modified-Since.
  assert.equal(
    evaluatePreconditions(
      h({ "if-none-match": '"x"', "if-modified-since": "Mon, 07 Dec 2026 00:00:00 GMT" }),
      v,
    ),
    "proceed",
  );
  assert.equal(
    evaluatePreconditions(h({ "if-modified-since": "Mon, 07 Dec 2026 00:00:00 GMT" }), v),
    "not-modified",
  );
  assert.equal(
    evaluatePreconditions(h({ "if-modified-since": "Sat, 05 Dec 2026 00:00:00 GMT" }), v),
    "proceed",
  );
  // The obsolete forms of HTTP-date count; a date of any other kind is ignored.
  for (const late of ["Monday, 07-Dec-26 00:00:00 GMT", "Mon Dec  7 00:00:00 2026"]) {
    assert.equal(evaluatePreconditions(h({ "if-modified-since": late }), v), "not-modified", late);
  }
  for (const notHttpDate of ["2030", "2030-01-01T00:00:00Z", "Mon, 07 Dec 2026 00:00:00 +0000"]) {
    const headers = h({ "if-modified-since": notHttpDate, "if-unmodified-since": notHttpDate });
    assert.equal(evaluatePreconditions(headers, v), "proceed", notHttpDate);
  }
  // If-Unmodified-Since: changed after the client's date fails; If-Match, when present, decides.
  const before = "Sat, 05 Dec 2026 00:00:00 GMT";
  assert.equal(evaluatePreconditions(h({ "if-unmodified-since": before }), v), "failed");
  assert.equal(evaluatePreconditions(h({ "if-unmodified-since": v.lastModified }), v), "proceed");
  assert.equal(evaluatePreconditions(h({ "if-unmodified-since": "not a date" }), v), "proceed");
  assert.equal(
    evaluatePreconditions(h({ "if-match": '"abc"', "if-unmodified-since": before }), v),
    "proceed",
  );
  assert.equal(ifRangeHolds(h({}), v), true);
  assert.equal(ifRangeHolds(h({ "if-range": '"abc"' }), v), true);
  assert.equal(ifRangeHolds(h({ "if-range": 'W/"abc"' }), v), false);
  assert.equal(ifRangeHolds(h({ "if-range": v.lastModified }), v), true);
  assert.equal(ifRangeHolds(h({ "if-range": "Mon, 07 Dec 2026 00:00:00 GMT" }), v), false);
});

Deno.test("parseRequestHead() reads method, target and headers; rejects malformed heads", () => {
  const request = parseRequestHead(
    "GET /files/a.bin?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nX-A: 1\r\nx-a:  2 ",
  );
  assert.equal(request.method, "GET");
  assert.equal(request.target, "/files/a.bin?x=1");
  assert.equal(request.headers.get("range"), "bytes=0-1");
  assert.equal(request.headers.get("x-a"), "1, 2");
  // An empty line before the request line is skipped (RFC 9112 section 2.2).
  assert.equal(parseRequestHead("\r\nGET /x HTTP/1.1\r\nHost: h").target, "/x");
  for (
    const [head, status] of [
      ["GET /x", 400],
      ["GET  /x HTTP/1.1", 400],
      ["GET /x HTTP/2.0", 505],
      ["GET /x HTTP/1.1\r\nNo colon here", 400],
      ["GET /x HTTP/1.1\r\nBad Name: v", 400],
      ["GET /x HTTP/1.1\r\n: empty name", 400],
      ["GET /x HTTP/1.1\r\nAccept: */*", 400],
      ["GET /x HTTP/1.1\r\nHost: a\r\nhost: b", 400],
    ] as const
  ) {
    assert.throws(
      () => parseRequestHead(head),
      (e) => e instanceof BadRequestError && e.status === status,
      head,
    );
  }
});

/** A connection that yields `chunks` one read at a time, then stays open (reads wait). */
function _conn(chunks: string[]): Deno.Conn {
  const bytes = chunks.map((chunk) => new TextEncoder().encode(chunk));
  return {
    read: async (into: Uint8Array) => {
      const next = bytes.shift();
      if (next === undefined) return await new Promise<null>(() => {});
      into.set(next);
      return next.length;
    },
    close: () => {},
  } as unknown as Deno.Conn;
}

Deno.test("readRequestHead() ends a head at CRLF CRLF or at bare LFs, in whatever pieces it comes", async () => {
  for (
    const chunks of [
      ["GET /files/a HTTP/1.1\r\nHost: h\r\n\r\n"],
      ["GET /files/a HTTP/1.1\nHost: h\n\n"],
      ["GET /files/a HTTP/1.1\r\nHost: h\n\r\n"],
      ["GET /files/a HTTP/1.1\r", "\nHost: h\r", "\n", "\r", "\n"],
      ["GET /files/a HTTP/1.1\n", "Host: h\n", "\n"],
    ]
  ) {
    const request = await readRequestHead(_conn(chunks), 1_000);
    assert.ok(typeof request !== "string", JSON.stringify(chunks));
    assert.equal(request.target, "/files/a", JSON.stringify(chunks));
    assert.equal(request.headers.get("host"), "h", JSON.stringify(chunks));
  }
});

Deno.test("PartBudget grants in order, lets one oversize part through alone, honours abort", async () => {
  const budget = new PartBudget(100);
  await budget.acquire(60);
  const order: string[] = [];
  const big = budget.acquire(80).then(() => order.push("big"));
  const small = budget.acquire(10).then(() => order.push("small"));
  const controller = new AbortController();
  const aborted = budget.acquire(10, controller.signal).catch((e) => order.push(`aborted ${e}`));
  await Promise.resolve();
  assert.deepEqual(order, []);
  controller.abort("stop");
  await aborted;
  budget.release(60);
  await Promise.all([big, small]);
  assert.deepEqual(order, ["aborted stop", "big", "small"]);
  assert.equal(budget.usedBytes, 90);
  budget.release(90);
  await budget.acquire(500);
  assert.equal(budget.usedBytes, 500);
});

Deno.test("PartBudget: one address holds at most its share; its waiter lets others pass", async () => {
  const budget = new PartBudget(100);
  assert.equal(budget.ownerLimitBytes, 50);
  const slow = budget.share("10.0.0.1");
  const other = budget.share("10.0.0.2");
  await slow.acquire(40);
  const order: string[] = [];
  const over = slow.acquire(20).then(() => order.push("slow 20"));
  // Behind the slow address's waiter, yet served: the waiter is over its share, not the budget.
  await other.acquire(30);
  order.push("other 30");
  await Promise.resolve();
  assert.deepEqual(order, ["other 30"]);
  slow.release(40);
  await over;
  assert.deepEqual(order, ["other 30", "slow 20"]);
  assert.equal(budget.usedBytes, 50);
  // Holding nothing, an address still gets one part larger than its share.
  other.release(30);
  slow.release(20);
  await slow.acquire(90);
  assert.equal(budget.usedBytes, 90);
});

/** An entry of parts of these sizes, read by a reader that fills each with zeros. */
function _fakeParts(sizes: number[]): { entry: FileEntry; reader: PartReader } {
  const parts = sizes.map((size, i) => ({ size, digest: i.toString(16).padStart(64, "0") }));
  const entry = { name: "f.bin", partSize: Math.max(...sizes), parts } as unknown as FileEntry;
  const reader = {
    read: async (
      part: { size: number },
      sink: { write(o: number, b: Uint8Array): Promise<void> },
    ) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      await sink.write(0, new Uint8Array(part.size));
    },
  } as unknown as PartReader;
  return { entry, reader };
}

Deno.test("VerifiedParts: a download's small last part never takes the share ahead of its big one", async () => {
  // One address, a share of one 8-byte part; two downloads of a file of 8 + 1 bytes. While the
  // first sends its first part, the second's parts wait. Letting the second's last part in ahead
  // of its first (it fits what is left of the share) left the second holding it, waiting for the
  // share that very part held: stuck for good, its memory never given back.
  const budget = new PartBudget(16);
  const share = budget.share("10.0.0.1");
  const { entry, reader } = _fakeParts([8, 1]);
  const first = new VerifiedParts(entry, 0, 1, reader, share);
  const second = new VerifiedParts(entry, 0, 1, reader, share);
  const firstPart = await first.next();
  const secondGot = (async () => {
    const got: number[] = [];
    for (let part = await second.next(); part !== undefined; part = await second.next()) {
      got.push(part.index);
      second.sent(part);
    }
    second.close();
    return got;
  })();
  await new Promise((resolve) => setTimeout(resolve, 20));
  first.sent(firstPart!);
  const lastPart = await first.next();
  first.sent(lastPart!);
  first.close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`stuck, ${budget.usedBytes} bytes held`)), 3_000);
  });
  try {
    assert.deepEqual(await Promise.race([secondGot, stuck]), [0, 1]);
  } finally {
    clearTimeout(timer);
  }
  assert.equal(budget.usedBytes, 0);
});

Deno.test("VerifiedParts: a part handed out and never sent goes back to the budget on close()", async () => {
  const budget = new PartBudget(100);
  const { entry, reader } = _fakeParts([10, 10, 10]);
  const parts = new VerifiedParts(entry, 0, 2, reader, budget.share("10.0.0.1"));
  const first = await parts.next();
  assert.equal(first?.index, 0);
  // The response ends here (the client reset the connection before the head went out).
  parts.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(budget.usedBytes, 0);
});

Deno.test("contentDisposition() gives an ASCII fallback and the exact name in filename*", () => {
  assert.equal(
    contentDisposition('a "b"\\ é%.txt'),
    `attachment; filename="a _b__ __.txt"; filename*=UTF-8''a%20%22b%22%5C%20%C3%A9%25.txt`,
  );
  assert.equal(mediaTypeOf("x.MP4"), "video/mp4");
  assert.equal(mediaTypeOf("noext"), "application/octet-stream");
  assert.equal(mediaTypeOf(".hidden"), "application/octet-stream");
});

Deno.test("metalinkDocument() escapes the name and lists every piece and gateway", () => {
  const entry: FileEntry = {
    name: `a&<"'>.bin`,
    size: 10,
    partSize: 4,
    contentId: "c".repeat(64),
    owner: "operator",
    created: "",
    parts: ["1", "2", "3"].map((d) => ({ digest: d.repeat(64), size: 4, replicas: ["9001"] })),
  };
  const xml = metalinkDocument(entry, ["http://a:1/", "https://b:2"]);
  assert.match(xml, /<file name="a&#38;&#60;&#34;&#39;&#62;\.bin">/);
  assert.match(xml, /<size>10<\/size>/);
  assert.equal([...xml.matchAll(/<hash>/g)].length, 3);
  assert.match(xml, /<url priority="1">http:\/\/a:1\/files\/a%26%3C%22%27%3E\.bin<\/url>/);
  assert.match(xml, /<url priority="2">https:\/\/b:2\/files\//);
  assert.doesNotMatch(metalinkDocument({ ...entry, size: 0, parts: [] }, []), /pieces/);
});

Deno.test("isWildcardAddress() knows the addresses that listen on every interface", () => {
  for (const host of ["0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0", "::0"]) {
    assert.equal(isWildcardAddress(host), true, host);
  }
  for (const host of ["127.0.0.1", "::1", "10.0.0.1", "fe80::1", "localhost"]) {
    assert.equal(isWildcardAddress(host), false, host);
  }
});
