/**
 * A signed request is bound to one cluster and, for a delete or rename, to
 * the content it changes: a captured `rm` replayed on another cluster where
 * the same key owns the same file is refused, and so is one signed for what
 * the name held before a replace.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadIdentity } from "../lib/auth/identity.ts";
import { signRequest } from "../lib/auth/signed_request.ts";
import { Peer } from "../lib/client/peer.ts";
import { bindRequest, type UnboundRequest } from "../lib/client/signed_client.ts";
import { ProtocolError } from "../lib/wire/errors.ts";
import { readManifestJson, startCluster, type TestCluster, writeRandomFile } from "./harness.ts";
import { testUser, whoami } from "./upload_util.ts";

async function _connect(cluster: TestCluster): Promise<Peer> {
  return await Peer.connect(`127.0.0.1:${cluster.ports[0]}`);
}

async function _signedOn(
  cluster: TestCluster,
  identityPath: string,
  request: UnboundRequest,
) {
  const peer = await _connect(cluster);
  try {
    return await signRequest((await loadIdentity(identityPath))!, await bindRequest(peer, request));
  } finally {
    peer.close();
  }
}

async function _refusedOn(
  cluster: TestCluster,
  signed: Parameters<Peer["requestSigned"]>[0],
  pattern: RegExp,
): Promise<void> {
  const peer = await _connect(cluster);
  try {
    await assert.rejects(peer.requestSigned(signed), (error: Error) => {
      assert.ok(error instanceof ProtocolError, String(error));
      assert.equal(error.code, "UNAUTHORIZED", error.message);
      assert.match(error.message, pattern);
      return true;
    });
  } finally {
    peer.close();
  }
}

Deno.test("signed rm: captured on cluster A, replayed on cluster B (same key, same file) is refused; A still takes it", async () => {
  const a = await startCluster({ servers: 2, replicas: 1 });
  const b = await startCluster({ servers: 2, replicas: 1 }).catch(async (error) => {
    await a.stop();
    throw error;
  });
  try {
    const user = testUser(a, "alice");
    await whoami(a, user);
    const source = join(a.work, "same.bin");
    await writeRandomFile(source, 100_000, 5);
    for (const cluster of [a, b]) {
      const up = await cluster.fts(["upload", source], { env: user.env });
      assert.equal(up.code, 0, up.stderr);
    }
    // Same content on both: only the cluster tells the two requests apart.
    const [digestsA, digestsB] = await Promise.all(
      [a, b].map(async (cluster) =>
        (await readManifestJson(cluster.dir)).files["same.bin"]!.parts.map((p) => p.digest)
      ),
    );
    assert.deepEqual(digestsA, digestsB);

    const rm = await _signedOn(a, user.path, { op: "file.delete", name: "same.bin" });
    await _refusedOn(b, rm, /is for cluster .*, not this one/);
    assert.ok((await readManifestJson(b.dir)).files["same.bin"], "B's file was deleted");
    const mv = await _signedOn(a, user.path, { op: "file.rename", name: "same.bin", to: "x.bin" });
    await _refusedOn(b, mv, /not this one/);
    assert.ok((await readManifestJson(b.dir)).files["same.bin"], "B's file was renamed");

    // The very request is good on the cluster it was signed for.
    const peer = await _connect(a);
    try {
      assert.equal((await peer.requestSigned(rm)).op, "deleted");
    } finally {
      peer.close();
    }
    assert.equal((await readManifestJson(a.dir)).files["same.bin"], undefined);
  } finally {
    await a.stop();
    await b.stop();
  }
});

Deno.test("signed rm and mv: signed for a file's old content, sent after a --replace, are refused", async () => {
  const cluster = await startCluster({ servers: 2, replicas: 1 });
  try {
    const user = testUser(cluster, "alice");
    await whoami(cluster, user);
    const first = join(cluster.work, "v1", "f.bin");
    const second = join(cluster.work, "v2", "f.bin");
    await Deno.mkdir(join(cluster.work, "v1"));
    await Deno.mkdir(join(cluster.work, "v2"));
    await writeRandomFile(first, 80_000, 1);
    await writeRandomFile(second, 90_000, 2);
    const up = await cluster.fts(["upload", first], { env: user.env });
    assert.equal(up.code, 0, up.stderr);
    const rm = await _signedOn(cluster, user.path, { op: "file.delete", name: "f.bin" });
    const mv = await _signedOn(cluster, user.path, {
      op: "file.rename",
      name: "f.bin",
      to: "g.bin",
    });
    const replaced = await cluster.fts(["upload", second, "--replace"], { env: user.env });
    assert.equal(replaced.code, 0, replaced.stderr);
    const now = (await readManifestJson(cluster.dir)).files["f.bin"]!;
    await _refusedOn(cluster, rm, /changed since the request was signed/);
    await _refusedOn(cluster, mv, /changed since the request was signed/);
    const after = (await readManifestJson(cluster.dir)).files;
    assert.equal(after["f.bin"]?.size, now.size);
    assert.equal(after["g.bin"], undefined);
    // The commands sign for what the name holds now.
    const rmNow = await cluster.fts(["rm", "f.bin"], { env: user.env });
    assert.equal(rmNow.code, 0, rmNow.stderr);
  } finally {
    await cluster.stop();
  }
});
