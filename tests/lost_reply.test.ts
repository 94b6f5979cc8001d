/**
 * Signed rm and mv when the reply is lost: the first server a client tries
 * gets the whole request and applies it, but its reply never arrives (the
 * connection is reset), so the client retries on the next server, which
 * answers NOT_FOUND for the old name. The commands must report what happened.
 *
 * Both --server addresses are FaultProxies in front of two instances, sharing
 * one budget of lost replies: whichever the client tries first (signing
 * commands shuffle their servers) loses the reply, the other one answers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readManifest } from "./manifest_util.ts";
import { FaultProxy, type LoseReply } from "./fault_proxy.ts";
import {
  assertSameFile,
  readManifestJson,
  type RunResult,
  startCluster,
  type TestCluster,
  writeRandomFile,
} from "./harness.ts";
import { type TestUser, testUser, whoami } from "./upload_util.ts";

/** Above hello and file.get, below a signed request (see LoseReply). */
const SIGNED_REQUEST_MIN_BYTES = 200;

interface _Lossy {
  proxies: FaultProxy[];
  /** Runs fts with both proxies as --server, losing `lose` replies to signed requests. */
  run(
    args: string[],
    user: TestUser,
    meanwhile?: () => Promise<void>,
    lose?: number,
  ): Promise<RunResult>;
  close(): Promise<void>;
}

async function _lossy(cluster: TestCluster): Promise<_Lossy> {
  const proxies = [
    await FaultProxy.start({ port: cluster.ports[0]! }),
    await FaultProxy.start({ port: cluster.ports[1]! }),
  ];
  return {
    proxies,
    async run(args, user, meanwhile, lose = 1) {
      const lostBefore = proxies.reduce((n, p) => n + p.counters.lostReplies, 0);
      const loseReply: LoseReply = {
        afterClientBytes: SIGNED_REQUEST_MIN_BYTES,
        left: { count: lose },
        ...(meanwhile ? { meanwhile } : {}),
      };
      for (const proxy of proxies) proxy.fault = { loseReply };
      const servers = proxies.flatMap((p) => ["--server", p.address]);
      const result = await cluster.fts([...args, ...servers], { env: user.env });
      const lost = proxies.reduce((n, p) => n + p.counters.lostReplies, 0) - lostBefore;
      assert.equal(
        lost,
        lose,
        `expected ${lose} lost replies:\n${result.stdout}\n${result.stderr}`,
      );
      return result;
    },
    async close() {
      for (const proxy of proxies) await proxy.close();
    },
  };
}

async function _upload(cluster: TestCluster, user: TestUser, path: string, name: string) {
  const up = await cluster.fts(["upload", path, "--as", name], { env: user.env });
  assert.equal(up.code, 0, up.stderr);
}

Deno.test("rm and mv: reply lost after the change was applied (3 servers, R=2, 2 proxies)", async (t) => {
  const cluster = await startCluster({
    servers: 3,
    replicas: 2,
    partSize: "64KiB",
    files: { "op.bin": 1000 },
  });
  const lossy = await _lossy(cluster);
  const alice = testUser(cluster, "alice");
  const bob = testUser(cluster, "bob");
  const src = join(cluster.work, "src");
  const source = (name: string, seed: number) => {
    const path = join(src, `${name}.src`);
    return writeRandomFile(path, 150_000, seed).then(() => path);
  };
  try {
    const aliceOwner = await whoami(cluster, alice);

    await t.step("rm: the delete applied, its reply lost: exit 0, the file is gone", async () => {
      await _upload(cluster, alice, await source("a.bin", 11), "a.bin");
      const rm = await lossy.run(["rm", "a.bin"], alice);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(
        rm.stdout,
        /^removed a\.bin: the reply from 127\.0\.0\.1:\d+ was lost \(.+\), and a retry found the file already gone$/m,
      );
      assert.equal((await readManifestJson(cluster.dir)).files["a.bin"], undefined);
      const ls = await cluster.fts(["ls", "--json"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.doesNotMatch(ls.stdout, /"a\.bin"/);
    });

    await t.step(
      "mv: the rename applied, its reply lost: exit 0, NEW holds OLD's content",
      async () => {
        const path = await source("b.bin", 12);
        await _upload(cluster, alice, path, "b.bin");
        const before = (await readManifest(cluster.dir)).files["b.bin"]!;
        const mv = await lossy.run(["mv", "b.bin", "c.bin"], alice);
        assert.equal(mv.code, 0, mv.stderr);
        assert.match(
          mv.stdout,
          /^renamed b\.bin -> c\.bin: the reply from 127\.0\.0\.1:\d+ was lost \(.+\), and a retry found c\.bin holding what b\.bin held$/m,
        );
        const files = (await readManifest(cluster.dir)).files;
        assert.equal(files["b.bin"], undefined);
        assert.equal(files["c.bin"]?.owner, aliceOwner);
        assert.deepEqual(files["c.bin"]?.parts, before.parts);
        const dest = join(cluster.work, "dest");
        await Deno.mkdir(dest);
        const fetched = await cluster.fts(["fetch", "c.bin", dest]);
        assert.equal(fetched.code, 0, fetched.stderr);
        await assertSameFile(join(dest, "c.bin"), path);
      },
    );

    await t.step("mv: reply lost, and NEW is meanwhile someone else's file: exit 1", async () => {
      await _upload(cluster, alice, await source("d.bin", 13), "d.bin");
      const bobs = await source("e.bin", 14);
      // While the reply is held back, alice's renamed file goes and bob takes its name.
      const mv = await lossy.run(["mv", "d.bin", "e.bin"], alice, async () => {
        const rm = await cluster.fts(["rm", "e.bin"], { env: alice.env });
        assert.equal(rm.code, 0, rm.stderr);
        await _upload(cluster, bob, bobs, "e.bin");
      });
      assert.equal(mv.code, 1, mv.stdout);
      assert.match(
        mv.stderr,
        /No file named "d\.bin"; the reply from .* was lost .*, so that attempt may have renamed it, but "e\.bin" belongs to ed25519:/,
      );
      const files = (await readManifest(cluster.dir)).files;
      assert.equal(files["e.bin"]?.owner, await whoami(cluster, bob));
    });

    await t.step("mv: reply lost, and NEW is meanwhile gone: exit 1", async () => {
      await _upload(cluster, alice, await source("f.bin", 15), "f.bin");
      const mv = await lossy.run(["mv", "f.bin", "g.bin"], alice, async () => {
        const rm = await cluster.fts(["rm", "g.bin"], { env: alice.env });
        assert.equal(rm.code, 0, rm.stderr);
      });
      assert.equal(mv.code, 1, mv.stdout);
      assert.match(mv.stderr, /No file named "f\.bin"; .*no file named "g\.bin" exists either/);
    });

    await t.step(
      "rm: every reply lost: exit 1, saying the delete may have been applied",
      async () => {
        await _upload(cluster, alice, await source("i.bin", 16), "i.bin");
        const rm = await lossy.run(["rm", "i.bin"], alice, undefined, 2);
        assert.equal(rm.code, 1, rm.stdout);
        assert.match(
          rm.stderr,
          /Cannot send file\.delete to any server \(tried 2\); the attempt on 127\.0\.0\.1:\d+ lost its reply, so it may have been applied/,
        );
      },
    );

    await t.step(
      "rm and mv of a name that never existed stay NOT_FOUND, reply lost or not",
      async () => {
        const plain = await cluster.fts(["rm", "ghost.bin"], { env: alice.env });
        assert.equal(plain.code, 1);
        assert.match(plain.stderr, /No file named "ghost\.bin"/);
        const rm = await lossy.run(["rm", "ghost.bin"], alice);
        assert.equal(rm.code, 1, rm.stdout);
        assert.match(rm.stderr, /No file named "ghost\.bin"/);
        const mv = await lossy.run(["mv", "ghost.bin", "h.bin"], alice);
        assert.equal(mv.code, 1, mv.stdout);
        assert.match(mv.stderr, /No file named "ghost\.bin"/);
        assert.equal((await readManifestJson(cluster.dir)).files["h.bin"], undefined);
      },
    );
  } finally {
    await lossy.close();
    await cluster.stop();
  }
});
