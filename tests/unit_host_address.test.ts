/** parseHostAddress(): what a certificate's subject-alternative name will hold. */
import assert from "node:assert/strict";
import { parseHostAddress } from "../lib/wire/host_address.ts";
import { UsageError } from "../lib/wire/errors.ts";

Deno.test("host address: IPv4 and IPv6 (compressed, bracketed, v4-mapped) become IP bytes", () => {
  assert.deepEqual(parseHostAddress("10.77.0.11"), {
    kind: "ip",
    text: "10.77.0.11",
    bytes: Uint8Array.of(10, 77, 0, 11),
  });
  const loop = parseHostAddress("[::1]");
  assert.equal(loop.kind, "ip");
  assert.equal(loop.text, "::1");
  assert.deepEqual(loop.kind === "ip" && [...loop.bytes], [...new Array(15).fill(0), 1]);
  const doc = parseHostAddress("2001:db8::8:1");
  assert.deepEqual(
    doc.kind === "ip" && [...doc.bytes],
    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1],
  );
  const mapped = parseHostAddress("::ffff:1.2.3.4");
  assert.deepEqual(mapped.kind === "ip" && [...mapped.bytes].slice(10), [0xff, 0xff, 1, 2, 3, 4]);
});

Deno.test("host address: DNS names lower-cased; typos and junk refused with the value", () => {
  assert.deepEqual(parseHostAddress("Node-1.Example.org."), {
    kind: "dns",
    text: "node-1.example.org",
  });
  assert.deepEqual(parseHostAddress("localhost"), { kind: "dns", text: "localhost" });
  for (const bad of ["10.0.0.256", "1.2.3", "1:2:3", "1::2::3", "a..b", "-x.org", "a b", ""]) {
    assert.throws(() => parseHostAddress(bad), (error: Error) => {
      assert.ok(error instanceof UsageError);
      assert.ok(error.message.includes(JSON.stringify(bad)), error.message);
      return true;
    });
  }
});
