/** Identity files, signed requests and the replay guard, in-process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ProtocolError } from "../lib/wire/errors.ts";
import {
  IDENTITY_FILE_MODE,
  loadIdentity,
  loadOrCreateIdentity,
  OWNER_PREFIX,
  publicKeyOf,
} from "../lib/auth/identity.ts";
import { ReplayGuard } from "../lib/auth/replay_guard.ts";
import { FileNonceStore } from "../lib/auth/file_nonce_store.ts";
import {
  checkSignedRequest,
  SIGNATURE_MAX_AGE_MS,
  signingMessage,
  signRequest,
} from "../lib/auth/signed_request.ts";
import { straceUnusable, tempDir } from "./harness.ts";

async function _rejects(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, "UNAUTHORIZED");
    assert.match(error.message, pattern);
    return true;
  });
}

/** A cluster id and a content id for requests that are only signed and checked, never sent. */
const CLUSTER = "00000000-0000-4000-8000-000000000000";
const CONTENT = "0".repeat(64);

Deno.test("loadOrCreateIdentity() creates an owner-only key file once, then reuses it", async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, "conf", "fts", "identity.json");
    const first = await loadOrCreateIdentity(path);
    assert.equal(first.created, true);
    assert.ok(first.owner.startsWith(OWNER_PREFIX));
    assert.equal(publicKeyOf(first.owner).length, 32);
    assert.equal((await Deno.stat(path)).mode! & 0o777, IDENTITY_FILE_MODE);
    const again = await loadOrCreateIdentity(path);
    assert.equal(again.created, false);
    assert.equal(again.owner, first.owner);
    // Two first uses at once agree on one key.
    const racePath = join(dir, "race.json");
    const racers = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateIdentity(racePath)));
    assert.equal(new Set(racers.map((r) => r.owner)).size, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadIdentity() refuses a key file others can read, and a directory", async () => {
  const dir = await tempDir();
  try {
    const path = join(dir, "identity.json");
    await loadOrCreateIdentity(path);
    await Deno.chmod(path, 0o644);
    await assert.rejects(loadIdentity(path), /accessible by others \(mode 644\)/);
    // A directory named as the key file is said to be one, not to need chmod 600.
    await assert.rejects(loadIdentity(dir), /is not a file \(a directory\?\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("publicKeyOf() accepts only the canonical owner string", () => {
  assert.throws(() => publicKeyOf("rsa:abc"), /must start with "ed25519:"/);
  assert.throws(() => publicKeyOf(`${OWNER_PREFIX}AAAA`), /32-byte/);
  assert.throws(() => publicKeyOf(`${OWNER_PREFIX}${"A".repeat(42)}B`), /canonical/);
});

Deno.test("checkSignedRequest() accepts a fresh signature and refuses tampering and staleness", async () => {
  const dir = await tempDir();
  try {
    const alice = await loadOrCreateIdentity(join(dir, "alice.json"));
    const bob = await loadOrCreateIdentity(join(dir, "bob.json"));
    const signed = await signRequest(alice, {
      op: "file.rename",
      cluster: CLUSTER,
      name: "a",
      contentId: CONTENT,
      to: "b",
    });
    await checkSignedRequest(signed);
    await _rejects(checkSignedRequest({ ...signed, to: "c" }), /does not verify/);
    await _rejects(checkSignedRequest({ ...signed, cluster: "other-cluster" }), /does not verify/);
    await _rejects(
      checkSignedRequest({ ...signed, contentId: "1".repeat(64) }),
      /does not verify/,
    );
    await _rejects(
      checkSignedRequest({ ...signed, auth: { ...signed.auth, key: bob.owner } }),
      /does not verify/,
    );
    await _rejects(
      checkSignedRequest({ ...signed, op: "file.delete" } as never),
      /does not verify/,
    );
    await _rejects(
      checkSignedRequest({ ...signed, auth: { ...signed.auth, nonce: "x" } }),
      /malformed nonce/,
    );
    const old = await signRequest(
      alice,
      { op: "file.delete", cluster: CLUSTER, name: "a", contentId: CONTENT },
      Date.now() - SIGNATURE_MAX_AGE_MS - 60_000,
    );
    await _rejects(checkSignedRequest(old), /stale/);
    const future = await signRequest(
      alice,
      { op: "file.delete", cluster: CLUSTER, name: "a", contentId: CONTENT },
      Date.now() + SIGNATURE_MAX_AGE_MS + 60_000,
    );
    await _rejects(checkSignedRequest(future), /from the future/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signingMessage() covers every field of file.publish in a fixed order", () => {
  const auth = { key: "ed25519:k", timestamp: 1, nonce: "n" };
  const base = {
    op: "file.publish" as const,
    cluster: CLUSTER,
    name: "a",
    replace: false,
    size: 10,
    partSize: 4,
    bodyDigest: "0".repeat(64),
  };
  const text = new TextDecoder().decode(signingMessage(base, auth));
  assert.equal(
    text,
    `fts-signed-request-v2\n["file.publish","ed25519:k",1,"n",["${CLUSTER}","a",false,10,4,"${
      "0".repeat(64)
    }"]]`,
  );
  for (
    const change of [{ replace: true }, { size: 11 }, { partSize: 5 }, { name: "b" }, {
      cluster: "other-cluster",
    }]
  ) {
    assert.notEqual(
      new TextDecoder().decode(signingMessage({ ...base, ...change }, auth)),
      text,
    );
  }
});

Deno.test("ReplayGuard.claim() refuses a nonce used before; FileNonceStore.sweep() drops only expired buckets", async () => {
  const dir = await tempDir();
  try {
    const now = Date.now();
    const auth = { key: "ed25519:k", timestamp: now, nonce: "A".repeat(22), signature: "s" };
    const store = new FileNonceStore(dir);
    const guard = new ReplayGuard(store);
    await guard.claim(auth, now);
    await _rejects(guard.claim(auth, now), /already used/);
    // The same nonce from another signer is another request.
    await guard.claim({ ...auth, key: "ed25519:other" }, now);
    assert.equal(await store.sweep(now), 0);
    await _rejects(guard.claim(auth, now), /already used/);
    // Once no request of that time can pass the freshness check, its bucket goes.
    assert.equal(await store.sweep(now + 3 * SIGNATURE_MAX_AGE_MS), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "ReplayGuard.claim() flushes the nonce's directory before the request may take effect (strace)",
  ignore: await straceUnusable(),
  async fn() {
    const dir = await tempDir();
    try {
      const script = join(dir, "claim.ts");
      const guard = new URL("../lib/auth/replay_guard.ts", import.meta.url).href;
      const store = new URL("../lib/auth/file_nonce_store.ts", import.meta.url).href;
      await Deno.writeTextFile(
        script,
        `import { ReplayGuard } from ${JSON.stringify(guard)};\n` +
          `import { FileNonceStore } from ${JSON.stringify(store)};\n` +
          `const now = Date.now();\n` +
          `const guard = new ReplayGuard(new FileNonceStore(Deno.args[0]));\n` +
          `for (const nonce of ["A", "B"]) {\n` +
          `  await guard.claim({ key: "ed25519:k", timestamp: now, nonce: nonce.repeat(22), signature: "s" }, now);\n` +
          `}\n`,
      );
      const data = join(dir, "data");
      await Deno.mkdir(data);
      const log = join(dir, "strace.log");
      const output = await new Deno.Command("strace", {
        args: ["-f", "-qq", "-y", "-e", "trace=fsync", "-o", log, Deno.execPath()]
          .concat(["run", "-A", "--no-config", script, data]),
        env: { DENO_NO_UPDATE_CHECK: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
      const flushed = (await Deno.readTextFile(log)).split("\n")
        .flatMap((line) => line.match(/fsync\(\d+<([^>]*)>\)/)?.[1] ?? []);
      const nonces = join(data, "nonces");
      const buckets = flushed.filter((path) => path.startsWith(nonces + "/"));
      // For each nonce: its bucket directory and the directories above it.
      assert.equal(buckets.length, 2, flushed.join("\n"));
      assert.equal(new Set(buckets).size, 1);
      assert.deepEqual(flushed.filter((path) => path === nonces || path === data).sort(), [
        data,
        data,
        nonces,
        nonces,
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
