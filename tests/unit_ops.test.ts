/**
 * Unit tests of the op table (lib/wire/ops.ts) and the server's handler table
 * (lib/server/handlers.ts): every op has a parser, a reply check and a
 * handler, the two tables name the same ops, and an op outside them gets
 * UNKNOWN_OP as before.
 */
import assert from "node:assert/strict";
import { type Header } from "../lib/wire/frame.ts";
import {
  OPS,
  parseReply,
  parseReplyBody,
  parseRequest,
  type RequestOp,
  takesBody,
} from "../lib/wire/ops.ts";
import { MAX_LOOKUP_NAMES } from "../lib/wire/ops_files.ts";
import { HANDLERS } from "../lib/server/handlers.ts";
import { assertCode } from "./unit_helpers.ts";

const DIGEST = "ab".repeat(32);
const CLUSTER = "5f0c2a9e-4b1d-4c3e-9a7f-0d2e6b8c1a44";
const AUTH = { key: "ed25519:k", timestamp: 1, nonce: "n".repeat(22), signature: "s" };

/** A good request of every op; the mapped type makes this list exhaustive too. */
const REQUESTS: { [K in RequestOp]: Header & { op: K } } = {
  "hello": { op: "hello", version: 1, agent: "fts/0.1" },
  "ping": { op: "ping" },
  "stats": { op: "stats" },
  "cluster.info": { op: "cluster.info" },
  "file.get": { op: "file.get", name: "a.bin" },
  "file.lookup": { op: "file.lookup", names: ["a.bin", "b.bin"] },
  "file.list": { op: "file.list" },
  "part.get": { op: "part.get", digest: DIGEST, offset: 0, length: 10 },
  "part.put": {
    op: "part.put",
    digest: DIGEST,
    cluster: CLUSTER,
    auth: { key: "ed25519:k", timestamp: 1, signature: "s" },
  },
  "part.report": { op: "part.report", digest: DIGEST },
  "part.has": { op: "part.has", digest: DIGEST },
  "file.publish": {
    op: "file.publish",
    cluster: CLUSTER,
    name: "a.bin",
    replace: false,
    size: 10,
    partSize: 4096,
    bodyDigest: DIGEST,
    auth: AUTH,
  },
  "file.delete": {
    op: "file.delete",
    cluster: CLUSTER,
    name: "a.bin",
    contentId: DIGEST,
    auth: AUTH,
  },
  "file.rename": {
    op: "file.rename",
    cluster: CLUSTER,
    name: "a.bin",
    contentId: DIGEST,
    to: "b.bin",
    auth: AUTH,
  },
  "part.list": { op: "part.list" },
  "part.verify": { op: "part.verify", digest: DIGEST },
};

/** The reply header an instance sends to each op, as server.ts and mutations.ts build it. */
const REPLIES: { [K in RequestOp]: Header } = {
  "hello": { op: "hello", version: 1, id: "0", generation: 3 },
  "ping": { op: "pong" },
  "stats": { op: "stats", id: "0", uptimeMs: 5, requests: 2 },
  "cluster.info": { op: "cluster", replicas: 2, partSize: 4096, clusterId: CLUSTER },
  "file.get": { op: "file", name: "a.bin", generation: 3 },
  "file.lookup": { op: "found", generation: 3 },
  "file.list": { op: "files", generation: 3 },
  "part.get": { op: "data", digest: DIGEST, offset: 0, length: 10 },
  "part.put": { op: "ok", stored: true },
  "part.report": { op: "ok", quarantined: false },
  "part.has": { op: "has", digest: DIGEST, stored: true, size: 10 },
  "file.publish": {
    op: "published",
    name: "a.bin",
    contentId: DIGEST,
    generation: 4,
    unchanged: false,
    partsFreed: 0,
  },
  "file.delete": { op: "deleted", name: "a.bin", generation: 5, partsFreed: 1, copiesFreed: 2 },
  "file.rename": { op: "renamed", name: "a.bin", to: "b.bin", generation: 6 },
  "part.list": { op: "parts", count: 1 },
  "part.verify": { op: "verified", digest: DIGEST, status: "ok" },
};

const ALL_OPS = Object.keys(OPS).sort() as RequestOp[];

Deno.test("OPS and HANDLERS name the same ops, each with a parser, a reply check and a handler", () => {
  assert.deepEqual(Object.keys(HANDLERS).sort(), ALL_OPS);
  assert.deepEqual(Object.keys(REQUESTS).sort(), ALL_OPS);
  for (const op of ALL_OPS) {
    const spec = OPS[op];
    assert.equal(typeof spec.parseRequest, "function", op);
    assert.equal(typeof spec.parseReply, "function", op);
    assert.equal(typeof spec.requestBody, "boolean", op);
    assert.ok(typeof spec.replyOp === "string" && spec.replyOp.length > 0, op);
    assert.ok(
      ["none", "bytes", "function"].includes(
        typeof spec.replyBody === "function" ? "function" : spec.replyBody,
      ),
      op,
    );
    assert.equal(typeof HANDLERS[op], "function", op);
  }
});

Deno.test("parseRequest() files every op under its own name and keeps its fields", () => {
  for (const op of ALL_OPS) assert.deepEqual(parseRequest(REQUESTS[op]), REQUESTS[op], op);
});

Deno.test("takesBody() allows a request body only on part.put and file.publish", () => {
  assert.deepEqual(ALL_OPS.filter(takesBody), ["file.publish", "part.put"]);
});

Deno.test("parseRequest() answers UNKNOWN_OP for an op not in the table, Object's own names too", () => {
  for (const op of ["__proto__", "constructor", "toString", "hasOwnProperty", "pong", "ok"]) {
    assert.throws(() => parseRequest({ op }), (error: unknown) => {
      assertCode("UNKNOWN_OP")(error);
      assert.equal((error as Error).message, `Unknown op "${op}"`);
      return true;
    });
  }
});

Deno.test("parseReply() accepts each op's reply as the instance sends it", () => {
  for (const op of ALL_OPS) assert.deepEqual(parseReply(op, REPLIES[op]), REPLIES[op], op);
  // A hello from an instance that cannot read its manifest.
  const damaged = { op: "hello", version: 1, id: "0", generation: null };
  assert.deepEqual(parseReply("hello", damaged), damaged);
  // part.has leaves size out when nothing is stored.
  const absent = { op: "has", digest: DIGEST, stored: false };
  assert.deepEqual(parseReply("part.has", absent), absent);
});

Deno.test("parseReply() answers BAD_FRAME for another op's reply or a bad field", () => {
  for (const op of ALL_OPS) {
    const other = ALL_OPS.map((o) => REPLIES[o]).find((r) => r.op !== OPS[op].replyOp)!;
    assert.throws(() => parseReply(op, other), assertCode("BAD_FRAME"), op);
  }
  const bad: [RequestOp, Header][] = [
    ["hello", { op: "hello", version: "1", id: "0", generation: 0 }],
    ["part.get", { op: "data", digest: "../x", offset: 0, length: 1 }],
    ["part.put", { op: "ok" }],
    ["part.has", { op: "has", digest: DIGEST, stored: true, size: -1 }],
    ["part.verify", { op: "verified", digest: DIGEST, status: "fine" }],
    ["file.delete", { op: "deleted", name: "a", generation: 1, partsFreed: "1", copiesFreed: 0 }],
  ];
  for (const [op, header] of bad) {
    assert.throws(() => parseReply(op, header), assertCode("BAD_FRAME"), JSON.stringify(header));
  }
});

Deno.test("parseReplyBody() checks the JSON bodies of file.get, file.lookup, file.list, cluster.info and part.list", () => {
  assert.deepEqual(
    parseReplyBody("file.get", { entry: { name: "a" }, instances: { "0": "h:1", "1": 5 } }),
    { entry: { name: "a" }, instances: { "0": "h:1" } },
  );
  assert.deepEqual(
    parseReplyBody("file.lookup", { entries: [null, { name: "b" }], instances: { "0": "h:1" } }),
    { entries: [null, { name: "b" }], instances: { "0": "h:1" } },
  );
  assert.throws(() => parseReplyBody("file.lookup", { entries: {} }), assertCode("BAD_FRAME"));
  assert.throws(() => parseReplyBody("file.list", { files: [] }), assertCode("BAD_FRAME"));
  assert.throws(() => parseReplyBody("cluster.info", { instances: {} }), assertCode("BAD_FRAME"));
  assert.deepEqual(
    parseReplyBody("part.list", {
      parts: [[DIGEST, 10], ["../x", 1], [DIGEST, "big"]],
      quarantined: [DIGEST, 7],
    }),
    { parts: [[DIGEST, 10]], quarantined: [DIGEST] },
  );
  assert.throws(() => parseReplyBody("part.list", { parts: [] }), assertCode("BAD_FRAME"));
  assert.throws(() => parseReplyBody("ping", {}), TypeError);
});

Deno.test("parseRequest() refuses a file.lookup of no names, too many, or names that are not strings", () => {
  const names = Array.from({ length: MAX_LOOKUP_NAMES }, (_, i) => `f-${i}`);
  assert.deepEqual(parseRequest({ op: "file.lookup", names }), { op: "file.lookup", names });
  for (const bad of [undefined, [], [...names, "one more"], ["a", 1], "a.bin"]) {
    assert.throws(
      () => parseRequest({ op: "file.lookup", names: bad }),
      assertCode("BAD_REQUEST"),
      JSON.stringify(bad),
    );
  }
});
