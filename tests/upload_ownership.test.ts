import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { type ErrorCode, ProtocolError } from "../lib/wire/errors.ts";
import { type Identity, loadIdentity } from "../lib/auth/identity.ts";
import { Peer } from "../lib/client/peer.ts";
import { dataPaths } from "../lib/state/config.ts";
import { bindRequest, type UnboundRequest } from "../lib/client/signed_client.ts";
import { type Header } from "../lib/wire/frame.ts";
import { SIGNATURE_MAX_AGE_MS, signRequest } from "../lib/auth/signed_request.ts";
import { assertSameFile, readManifestJson, startCluster, writeRandomFile } from "./harness.ts";
import { storedCopies, testUser, whoami } from "./upload_util.ts";

/** Sends one frame to an instance and returns its reply, or the error code it answered. */
async function _send(port: number, header: Header, body?: Uint8Array): Promise<Header | ErrorCode> {
  const peer = await Peer.connect(`127.0.0.1:${port}`, { stallTimeoutMs: 10_000 });
  try {
    return await peer.request(header, body);
  } catch (error) {
    if (error instanceof ProtocolError) return error.code;
    throw error;
  } finally {
    peer.close();
  }
}

async function _refused(
  port: number,
  header: Header,
  code: ErrorCode,
  message: RegExp,
  body?: Uint8Array,
): Promise<void> {
  const peer = await Peer.connect(`127.0.0.1:${port}`, { stallTimeoutMs: 10_000 });
  try {
    await assert.rejects(peer.request(header, body), (error: unknown) => {
      assert.ok(error instanceof ProtocolError, String(error));
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
      return true;
    });
  } finally {
    peer.close();
  }
}

/** How many nonces of signed requests the data directory `dir` holds. */
async function _nonceFiles(dir: string): Promise<number> {
  let count = 0;
  const walk = async (path: string): Promise<void> => {
    for await (const entry of Deno.readDir(path)) {
      if (entry.isDirectory) await walk(join(path, entry.name));
      else count++;
    }
  };
  await walk(dataPaths(dir).noncesDir).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  return count;
}

function _sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("rm/mv: only the owner may; replayed, tampered and stale signed requests are refused (6 servers, R=3)", async (t) => {
  const cluster = await startCluster({ partSize: "64KiB", files: { "op.bin": 150_000 } });
  const alice = testUser(cluster, "alice");
  const bob = testUser(cluster, "bob");
  const src = join(cluster.work, "src");
  const dest = join(cluster.work, "dest");
  await Deno.mkdir(dest);
  const [first, second] = cluster.ports as [number, number];
  try {
    await whoami(cluster, alice);
    await whoami(cluster, bob);
    await writeRandomFile(join(src, "a.bin"), 300_000, 21);
    for (const name of ["a.bin", "b.bin"]) {
      const up = await cluster.fts(["upload", join(src, "a.bin"), "--as", name], {
        env: alice.env,
      });
      assert.equal(up.code, 0, up.stderr);
    }

    await t.step("B cannot delete or rename A's file; nothing changes", async () => {
      const before = await readManifestJson(cluster.dir);
      const noncesBefore = await _nonceFiles(cluster.dir);
      const rm = await cluster.fts(["rm", "a.bin"], { env: bob.env });
      assert.equal(rm.code, 1);
      assert.match(rm.stderr, /Cannot delete "a\.bin": it belongs to ed25519:\S+, not to ed25519:/);
      const mv = await cluster.fts(["mv", "a.bin", "mine.bin"], { env: bob.env });
      assert.equal(mv.code, 1);
      assert.match(mv.stderr, /Cannot rename "a\.bin": it belongs to/);
      // Nor can the operator's preload --replace (from the data directory) take it over.
      const taken = await cluster.fts([
        "preload",
        join(src, "a.bin"),
        "--as",
        "a.bin",
        "--replace",
      ]);
      assert.equal(taken.code, 1, taken.stderr);
      assert.match(taken.stderr, /"a\.bin" belongs to ed25519:\S+, not the operator/);
      assert.deepEqual(await readManifestJson(cluster.dir), before);
      // Refused before its nonce was recorded: a stranger's key writes nothing.
      assert.equal(await _nonceFiles(cluster.dir), noncesBefore);
    });

    await t.step("A renames (metadata only) and deletes her file", async () => {
      const before = (await readManifestJson(cluster.dir)).files["a.bin"]!;
      const mv = await cluster.fts(["mv", "a.bin", "renamed.bin"], { env: alice.env });
      assert.equal(mv.code, 0, mv.stderr);
      const files = (await readManifestJson(cluster.dir)).files;
      assert.equal(files["a.bin"], undefined);
      assert.deepEqual(files["renamed.bin"]!.parts, before.parts);
      const fetched = await cluster.fts(["fetch", "renamed.bin", dest]);
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, "renamed.bin"), join(src, "a.bin"));
      const onto = await cluster.fts(["mv", "renamed.bin", "b.bin"], { env: alice.env });
      assert.equal(onto.code, 1);
      assert.match(onto.stderr, /a file named "b\.bin" exists/);
      // mv has no --replace: the hint says to remove the other file first.
      assert.match(onto.stderr, /fts rm it first/);
      assert.doesNotMatch(onto.stderr, /--replace/);
      const rm = await cluster.fts(["rm", "renamed.bin"], { env: alice.env });
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal((await readManifestJson(cluster.dir)).files["renamed.bin"], undefined);
      const gone = await cluster.fts(["rm", "renamed.bin"], { env: alice.env });
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /No file named "renamed\.bin"/);
    });

    await t.step("preloaded files belong to the operator, who signs with DIR's key", async () => {
      // Replacing one is refused before a part is sent (the instances know the operator's key).
      const copiesBefore = await storedCopies(cluster.dir);
      const replace = await cluster.fts(
        ["upload", join(src, "a.bin"), "--as", "op.bin", "--replace"],
        { env: alice.env },
      );
      assert.equal(replace.code, 1, replace.stderr);
      assert.match(replace.stderr, /Cannot replace "op\.bin": it belongs to operator, not to you/);
      assert.deepEqual(await storedCopies(cluster.dir), copiesBefore, "parts were sent");
      const rm = await cluster.fts(["rm", "op.bin"], { env: alice.env });
      assert.equal(rm.code, 1);
      assert.match(rm.stderr, /it belongs to operator/);
      const mv = await cluster.fts(["mv", "op.bin", "op2.bin", "--operator"]);
      assert.equal(mv.code, 0, mv.stderr);
      const opKey = await cluster.fts(["whoami", "--operator"]);
      assert.equal(opKey.code, 0, opKey.stderr);
      assert.equal(
        (await Deno.stat(join(cluster.dir, "operator_identity.json"))).mode! & 0o777,
        0o600,
      );
      const rmOp = await cluster.fts(["rm", "op2.bin", "--operator"]);
      assert.equal(rmOp.code, 0, rmOp.stderr);
      const both = await cluster.fts(["rm", "b.bin", "--operator", "--identity", alice.path]);
      assert.equal(both.code, 2);
      // A file uploaded with --operator is the operator's too: preload --replace may replace it.
      const up = await cluster.fts(["upload", join(src, "a.bin"), "--as", "up.bin", "--operator"]);
      assert.equal(up.code, 0, up.stderr);
      const replaced = await cluster.fts([
        "preload",
        join(src, "a.bin"),
        "--as",
        "up.bin",
        "--replace",
      ]);
      assert.equal(replaced.code, 0, replaced.stderr);
      const ls = JSON.parse((await cluster.fts(["ls", "up.bin", "--json"])).stdout);
      assert.equal(ls.owner, "operator");
    });

    const aliceId = (await loadIdentity(alice.path)) as Identity;
    const bobId = (await loadIdentity(bob.path)) as Identity;

    await t.step("a tampered signed request is refused", async () => {
      const signed = await signRequest(
        aliceId,
        await _bind(first, { op: "file.rename", name: "b.bin", to: "c.bin" }),
      );
      await _refused(first, { ...signed, to: "evil.bin" }, "UNAUTHORIZED", /does not verify/);
      await _refused(first, { ...signed, name: "x.bin" }, "UNAUTHORIZED", /does not verify/);
      // B's signature presented under A's key.
      const forged = await signRequest(
        bobId,
        await _bind(first, { op: "file.delete", name: "b.bin" }),
      );
      await _refused(
        first,
        { ...forged, auth: { ...forged.auth, key: aliceId.owner } },
        "UNAUTHORIZED",
        /does not verify/,
      );
      const stale = await signRequest(
        aliceId,
        await _bind(first, { op: "file.delete", name: "b.bin" }),
        Date.now() - SIGNATURE_MAX_AGE_MS - 60_000,
      );
      await _refused(first, stale, "UNAUTHORIZED", /stale/);
      assert.ok((await readManifestJson(cluster.dir)).files["b.bin"]);
    });

    await t.step("a replayed signed request is refused, on another instance too", async () => {
      const signed = await signRequest(
        aliceId,
        await _bind(first, { op: "file.rename", name: "b.bin", to: "c.bin" }),
      );
      assert.equal((await _send(first, signed) as Header).op, "renamed");
      const back = await cluster.fts(["mv", "c.bin", "b.bin"], { env: alice.env });
      assert.equal(back.code, 0, back.stderr);
      await _refused(second, signed, "UNAUTHORIZED", /already used/);
      await _refused(first, signed, "UNAUTHORIZED", /already used/);
      const files = (await readManifestJson(cluster.dir)).files;
      assert.ok(files["b.bin"]);
      assert.equal(files["c.bin"], undefined);
    });

    await t.step("a publish whose body was changed after signing is refused", async () => {
      const entry = (await readManifestJson(cluster.dir)).files["b.bin"]!;
      const parts = entry.parts.map(({ digest, size, replicas }) => ({ digest, size, replicas }));
      const body = new TextEncoder().encode(JSON.stringify({ parts }));
      const request = {
        op: "file.publish" as const,
        name: "copy.bin",
        replace: false,
        size: entry.size,
        partSize: entry.partSize,
        bodyDigest: _sha256(body),
      };
      const tampered = new TextEncoder().encode(
        JSON.stringify({ parts: parts.map((p) => ({ ...p, replicas: p.replicas.slice(0, 1) })) }),
      );
      await _refused(
        first,
        await signRequest(aliceId, await _bind(first, request)),
        "UNAUTHORIZED",
        /bodyDigest/,
        tampered,
      );
      // The same request untouched is accepted: publishing stored parts under a new name.
      assert.equal(
        (await _send(
          first,
          await signRequest(aliceId, await _bind(first, request)),
          body,
        ) as Header).op,
        "published",
      );
      const fetched = await cluster.fts(["fetch", "copy.bin", dest]);
      assert.equal(fetched.code, 0, fetched.stderr);
      await assertSameFile(join(dest, "copy.bin"), join(src, "a.bin"));
      // Naming a copy that is not stored is refused, and nothing is published.
      const missing = new TextEncoder().encode(JSON.stringify({
        parts: parts.map((p, i) => ({
          ...p,
          replicas: i === 0
            ? cluster.ports.map(String).filter((id) => !p.replicas.includes(id)).slice(0, 3)
            : p.replicas,
        })),
      }));
      await _refused(
        first,
        await signRequest(
          aliceId,
          await _bind(first, { ...request, name: "ghost.bin", bodyDigest: _sha256(missing) }),
        ),
        "MISSING_PARTS",
        /part 0 on instance/,
        missing,
      );
      assert.equal((await readManifestJson(cluster.dir)).files["ghost.bin"], undefined);
    });

    await t.step("the server refuses bad names in signed requests", async () => {
      const { cluster: clusterId } = await _bind(first, { op: "file.delete", name: "b.bin" });
      const contentId = "0".repeat(64);
      for (const name of ["", "..", "a/b", "a\u0000b", "x".repeat(256), "new\nline"]) {
        await _refused(
          first,
          await signRequest(
            aliceId,
            await _bind(first, { op: "file.rename", name: "b.bin", to: name }),
          ),
          "BAD_NAME",
          /New name/,
        );
        await _refused(
          first,
          await signRequest(aliceId, { op: "file.delete", cluster: clusterId, name, contentId }),
          "BAD_NAME",
          /File name/,
        );
      }
      assert.ok((await readManifestJson(cluster.dir)).files["b.bin"]);
    });
  } finally {
    await cluster.stop();
  }
});

/** Binds a request to the cluster and content instance `port` reports (bindRequest). */
async function _bind<R extends UnboundRequest>(port: number, request: R) {
  const peer = await Peer.connect(`127.0.0.1:${port}`);
  try {
    return await bindRequest(peer, request);
  } finally {
    peer.close();
  }
}
